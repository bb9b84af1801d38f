"""``hf`` backend: a tiny local Qwen2.5-VL student folder answers as a teacher."""

from __future__ import annotations

import pytest
from teachers_helpers import make_benchmark

from params_helpers import DEFAULT, teachers_config
from apodistill.config.train import TinyStudentConfig
from apodistill.findings import MS_CXR_T_5
from apodistill.teachers import hf as hf_module
from apodistill.teachers.runner import run_teachers

TEMPLATES = "templates/teachers"


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    from apodistill.student import build_processor, build_tiny_student, save_student, train_tokenizer

    corpus = ["<think>sharp costophrenic angles</think> <answer> " + " ".join(f"{f}: no" for f in MS_CXR_T_5) + " </answer>"] * 20
    tok = train_tokenizer(corpus, vocab_size=300)
    cfg = TinyStudentConfig(vocab_size=300, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=2,
                            intermediate_size=64, vision_hidden_size=32, vision_depth=1, vision_heads=2)
    model = build_tiny_student(cfg, tok, seed=0)
    out = tmp_path_factory.mktemp("student") / "tiny"
    save_student(model, build_processor(tok, 56), out)
    return out


def test_local_student_answers_every_request_once(tmp_path, student_dir, monkeypatch):
    bench = make_benchmark(tmp_path / "b", n_patients=3, studies_per_patient=2)  # 6 studies, 3 pairs
    roster = [{"name": "local", "backend": "hf", "model": str(student_dir), "concurrency": 4,
               "max_tokens": 8, "image_size": 56}]
    cfg = teachers_config(roster=roster, weights="auto", tasks=["single", "pair"])
    calls = []
    real = hf_module.HFBackend._generate

    def spy(self, batch):
        calls.append([len(r.image_paths) for r in batch])
        return real(self, batch)

    monkeypatch.setattr(hf_module.HFBackend, "_generate", spy)
    out = run_teachers(cfg, DEFAULT.base, "mimic_cxr", bench, TEMPLATES, tmp_path / "c.sqlite", progress=False)
    t = out.table
    assert len(t) == 9 and t.record_id.is_unique
    assert calls == [[1, 1, 1, 1], [1, 1, 2, 2], [2]]  # batches of `concurrency`; pairs carry two images
    assert (t.status == "ok").all()  # a random tiny model says little, but it answers
    assert (t.prompt_tokens > 0).all() and (t.task == ["single"] * 6 + ["pair"] * 3).all()
    assert (t.backend == "hf").all() and (t.latency_s > 0).all()
    assert out.stats["local.rows"] == 9  # local backend: credentialed source allowed without approval
    again = run_teachers(cfg, DEFAULT.base, "mimic_cxr", bench, TEMPLATES, tmp_path / "c.sqlite", progress=False)
    assert again.requested == {"local": 0} and len(calls) == 3 and again.table.equals(t)
