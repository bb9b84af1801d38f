"""Student encoding, save/load (full and LoRA), APO candidate scoring and the reference cache."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from params_helpers import section
from apodistill.consensus import TeacherAnswer, vote
from apodistill.findings import MS_CXR_T_5, format_trajectory, parse_trajectory
from apodistill.losses import sequence_logps
from apodistill.student import IGNORE, apply_lora, encode, load_student, save_student
from apodistill.training.apo import CandidateSet, build_candidates, reference_logps, score_sets
from apodistill.training.data import Example, ImageStore
from conftest import make_trajectory


def test_encode_supervises_only_the_target(tiny_student, tiny_images):
    root, paths = tiny_images
    _, proc = tiny_student()
    store = ImageStore(root, 64)
    target = make_trajectory(np.random.default_rng(0))
    enc = encode(proc, store.batch([Example((paths[0],), "Chest X-ray.", target)] * 2), ["Chest X-ray.", "Chest X-ray. Longer prompt."], [target, target], 512)
    tok = proc.tokenizer
    for row_ids, row_lab in zip(enc.input_ids, enc.labels):
        sup = row_ids[row_lab != IGNORE].tolist()
        assert tok.decode(sup[:-1]) == target and sup[-1] == tok.convert_tokens_to_ids("<|im_end|>")
    assert (enc.input_ids == tok.convert_tokens_to_ids("<|image_pad|>")).sum(1).tolist() == [4, 4]
    short = encode(proc, store.batch([Example((paths[0],), "p", target)]), ["p"], [target], 30)
    assert short.input_ids.shape[1] == 30


def test_save_load_full_and_lora(tiny_student, tiny_images, tmp_path):
    root, paths = tiny_images
    model, proc = tiny_student(seed=1)
    enc = encode(proc, ImageStore(root, 64).batch([Example((paths[1],), "p", "x")]), ["p"], ["<think>a</think>"], 64)
    save_student(model, proc, tmp_path / "full", extra={"image_size": 64})
    m2, _ = load_student(tmp_path / "full")
    assert torch.allclose(model(**enc.model_inputs()).logits, m2(**enc.model_inputs()).logits, atol=1e-5)
    lora = apply_lora(m2, section("spd.lora", r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for n, p in lora.named_parameters():
            if "lora_B" in n:
                p.add_(0.05)
    expected = lora(**enc.model_inputs()).logits
    save_student(lora, proc, tmp_path / "lora", base=str(tmp_path / "full"))
    m3, _ = load_student(tmp_path / "lora")
    assert not hasattr(m3, "peft_config")
    assert torch.allclose(expected, m3(**enc.model_inputs()).logits, atol=1e-4)


def _sets(paths, n=3):
    rng = np.random.default_rng(5)
    out = []
    for i in range(4):
        rej = tuple(make_trajectory(rng) for _ in range(n))
        mask = (True, i % 2 == 0, True)
        out.append(CandidateSet(("single", f"s{i}", None), (paths[i],), "Chest X-ray.", make_trajectory(rng), rej, mask, (1.0,) * n))
    return out


def test_score_sets_matches_one_sequence_at_a_time(tiny_student, tiny_images):
    root, paths = tiny_images
    model, proc = tiny_student(seed=2)
    store = ImageStore(root, 64)
    sets = _sets(paths)
    with torch.no_grad():
        chosen, rejected = score_sets(model, proc, store, sets, 256, "cpu")
        for b, s in enumerate(sets):
            for u, text in [(-1, s.chosen)] + list(enumerate(s.rejected)):
                enc = encode(proc, store.batch([Example(s.images, s.prompt, text)]), [s.prompt], [text], 256)
                one = sequence_logps(model(**enc.model_inputs()).logits, enc.labels)[0]
                got = chosen[b] if u < 0 else rejected[b, u]
                if u >= 0 and not s.mask[u]:
                    assert got == 0
                else:
                    assert torch.allclose(got, one, atol=1e-4), (b, u)


def test_reference_cache_reused_until_inputs_change(tiny_student, tiny_images, tmp_path):
    root, paths = tiny_images
    model, proc = tiny_student(seed=3)
    save_student(model, proc, tmp_path / "spd", extra={"image_size": 64})
    store = ImageStore(root, 64)
    sets = _sets(paths)
    c1, r1, hit1 = reference_logps(tmp_path / "spd", sets, store, tmp_path / "ref", 256, 2)
    c2, r2, hit2 = reference_logps(tmp_path / "spd", sets, store, tmp_path / "ref", 256, 2)
    assert (hit1, hit2) == (False, True)
    assert torch.allclose(c1, c2) and torch.allclose(r1, r2)
    changed = [dataclasses.replace(sets[0], chosen=sets[0].chosen + " ")] + sets[1:]
    _, _, hit3 = reference_logps(tmp_path / "spd", changed, store, tmp_path / "ref", 256, 2)
    assert hit3 is False


def test_build_candidates_masks_absent_and_identical():
    labels = {f: "no" for f in MS_CXR_T_5}
    t_same = format_trajectory("clear", labels, MS_CXR_T_5)
    t_other = format_trajectory("haze", labels | {"edema": "yes"}, MS_CXR_T_5)
    cons = pd.DataFrame([{"task": "single", "study_id": "s1", "prior_study_id": None, "text": t_same}])
    traj = pd.DataFrame([
        {"teacher": "a", "task": "single", "study_id": "s1", "prior_study_id": None, "text": t_same},
        {"teacher": "b", "task": "single", "study_id": "s1", "prior_study_id": None, "text": t_other},
    ])
    studies = pd.DataFrame({"study_id": ["s1"], "image_path": ["x.png"]})
    (s,) = build_candidates(cons, traj, studies, ["a", "b", "c"], {"a": 1, "b": 2, "c": 3}, MS_CXR_T_5, "templates/student")
    assert s.mask == (False, True, False) and s.rejected[1] == t_other and s.weights == (1.0, 2.0, 3.0)


def test_weighted_vote_and_reasoning_source():
    base = {f: "no" for f in MS_CXR_T_5}
    mk = lambda t, think, lab: TeacherAnswer(t, "", parse_trajectory(format_trajectory(think, lab, MS_CXR_T_5), MS_CXR_T_5))
    answers = [mk("a", "A says effusion", base | {"pleural_effusion": "yes"}), mk("b", "B clear", base), mk("c", "C clear too", base)]
    assert vote(answers, {"a": 1, "b": 1, "c": 1}, MS_CXR_T_5, "single").labels["pleural_effusion"] == "no"
    heavy = vote(answers, {"a": 3, "b": 1, "c": 1}, MS_CXR_T_5, "single")
    assert heavy.labels["pleural_effusion"] == "yes" and "A says effusion" in heavy.text
    assert heavy.agreeing["pleural_effusion"] == ["a"]
    tie = vote(answers[:2], {"a": 1, "b": 1}, MS_CXR_T_5, "single")
    assert tie.labels["pleural_effusion"] == "yes"  # ties go to the earlier value of the vocabulary


def test_disagreeing_negatives_mask_teachers_that_agree_on_every_answer():
    labels = {f: "no" for f in MS_CXR_T_5}
    chosen = format_trajectory("consensus words", labels, MS_CXR_T_5)
    same_answers = format_trajectory("other words, same answers", labels, MS_CXR_T_5)
    other_answers = format_trajectory("haze", labels | {"edema": "yes"}, MS_CXR_T_5)
    cons = pd.DataFrame([{"task": "single", "study_id": "s1", "prior_study_id": None, "text": chosen,
                          **{f"answer_{f}": v for f, v in labels.items()}}])
    traj = pd.DataFrame([
        {"teacher": "a", "task": "single", "study_id": "s1", "prior_study_id": None, "text": same_answers},
        {"teacher": "b", "task": "single", "study_id": "s1", "prior_study_id": None, "text": other_answers},
    ])
    studies = pd.DataFrame({"study_id": ["s1"], "image_path": ["x.png"]})
    args = (cons, traj, studies, ["a", "b"], {"a": 1, "b": 1}, MS_CXR_T_5, "templates/student")
    (all_,) = build_candidates(*args)  # the paper: every teacher is a negative
    (dis,) = build_candidates(*args, negatives="disagreeing")
    assert all_.mask == (True, True) and dis.mask == (False, True)
    with pytest.raises(ValueError, match="known: all, disagreeing"):
        build_candidates(*args, negatives="some")
