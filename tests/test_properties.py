"""Hostile input, generated (hypothesis): the trajectory/answer parser, the report labeler, params
loading and the server's request validation. Each property runs at least 200 generated cases;
none may raise anything but the function's documented error, and every rejection carries a
message. The case counts are printed (run with -s to see them)."""

from __future__ import annotations

import base64
import io
import math
from collections import Counter
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apodistill.findings import (
    CHEXPERT_14, MS_CXR_T_5, PAIR_VALUES, SINGLE_VALUES, TrajectoryParseError, display, format_trajectory, parse_trajectory,
)

CASES = 250
MIN_CASES = 200
SETTINGS = settings(max_examples=CASES, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
REPO = Path(__file__).resolve().parents[1]


def report(name: str, seen: Counter) -> None:
    total = sum(seen.values())
    print(f"\n{name}: {total} generated cases ({', '.join(f'{k} {v}' for k, v in sorted(seen.items()))})")
    assert total >= MIN_CASES, f"{name}: only {total} cases ran"


# --- trajectory / answer parser ------------------------------------------------------------

FINDINGS = list(MS_CXR_T_5)
_TOKENS = ["<think>", "</think>", "<answer>", "</answer>", "\n", ":", " ", "yes", "no", "uncertain", "stable",
           "worsening", "improving", "maybe", *[display(f) for f in CHEXPERT_14]]


@st.composite
def trajectories(draw):
    """Mostly near-valid trajectories with mutations, plus token soup and arbitrary text."""
    kind = draw(st.sampled_from(["valid", "mutated", "soup", "text"]))
    task = draw(st.sampled_from(["single", "pair"]))
    if kind == "text":
        return task, draw(st.text(max_size=300))
    if kind == "soup":
        return task, "".join(draw(st.lists(st.sampled_from(_TOKENS) | st.text(max_size=5), max_size=40)))
    values = SINGLE_VALUES if task == "single" else PAIR_VALUES
    labels = {f: draw(st.sampled_from(values)) for f in FINDINGS}
    text = format_trajectory(draw(st.text(max_size=80).filter(lambda t: "</think>" not in t and "<think>" not in t)), labels, FINDINGS)
    if kind == "mutated":
        for _ in range(draw(st.integers(1, 3))):
            i = draw(st.integers(0, max(0, len(text) - 1)))
            op = draw(st.sampled_from(["delete", "insert", "swap_value", "duplicate_line", "case"]))
            if op == "delete":
                text = text[:i] + text[i + draw(st.integers(1, 12)):]
            elif op == "insert":
                text = text[:i] + draw(st.sampled_from(_TOKENS) | st.text(max_size=4)) + text[i:]
            elif op == "swap_value":
                text = text.replace(draw(st.sampled_from(values)), draw(st.sampled_from(["", "Yes", "YES ", "n/a", "worse"])), 1)
            elif op == "duplicate_line":
                lines = text.split("\n")
                j = draw(st.integers(0, len(lines) - 1))
                text = "\n".join(lines[: j + 1] + [lines[j]] + lines[j + 1:])
            else:
                text = text.upper()
    return task, text


def test_parser_property():
    seen: Counter = Counter()

    @SETTINGS
    @given(trajectories())
    def check(case):
        task, text = case
        try:
            parsed = parse_trajectory(text, FINDINGS, task)
        except TrajectoryParseError as err:
            assert err.reason and err.detail and str(err).startswith(err.reason)
            seen["rejected"] += 1
            return
        assert set(parsed.labels) == set(FINDINGS)
        assert set(parsed.labels.values()) <= set(SINGLE_VALUES if task == "single" else PAIR_VALUES)
        # what parses, re-formats and parses again to the same labels
        again = parse_trajectory(format_trajectory(parsed.think or ".", parsed.labels, FINDINGS), FINDINGS, task)
        assert again.labels == parsed.labels
        seen["accepted"] += 1

    check()
    report("trajectory parser", seen)


# --- report labeler ------------------------------------------------------------------------

_PHRASES = ["no", "without", "possible", "likely", "cannot exclude", "resolved", "new", "small", "large", "left", "right",
            "pleural effusion", "effusion", "pneumothorax", "consolidation", "edema", "pneumonia", "cardiomegaly",
            "heart size is normal", "atelectasis", "opacity", "lines and tubes", ".", ",", ";", "\n", "FINDINGS:", "IMPRESSION:"]


def test_labeler_property():
    from apodistill.metrics.labeler import chexpert_f1, label_report

    seen: Counter = Counter()

    @SETTINGS
    @given(st.one_of(st.none(), st.text(max_size=300),
                     st.lists(st.sampled_from(_PHRASES), max_size=30).map(" ".join)))
    def check(text):
        labels = label_report(text)
        assert list(labels) == list(CHEXPERT_14)
        assert all(math.isnan(v) or v in (1.0, 0.0, -1.0) for v in labels.values())
        assert math.isnan(labels["no_finding"]) or labels["no_finding"] == 1.0
        pathology = [f for f in CHEXPERT_14 if f not in ("no_finding", "support_devices")]
        if any(labels[f] in (1.0, -1.0) for f in pathology):
            assert math.isnan(labels["no_finding"])
        assert label_report(text) == labels or any(math.isnan(v) for v in labels.values())  # pure
        seen["labelled"] += 1

    check()

    @settings(max_examples=CASES, deadline=None, database=None, derandomize=True)
    @given(st.lists(st.text(max_size=60), max_size=6), st.lists(st.text(max_size=60), max_size=6),
           st.sampled_from(["negative", "positive", "both", ""]))
    def check_f1(refs, hyps, uncertain):
        try:
            out = chexpert_f1(refs, hyps, uncertain)
        except ValueError as err:
            assert str(err)
            seen["f1 rejected"] += 1
            return
        assert all(isinstance(v, float) and (math.isnan(v) or 0.0 <= v <= 1.0) for v in out.values())
        seen["f1 scored"] += 1

    check_f1()
    report("report labeler", seen)


# --- params loading --------------------------------------------------------------------------

BASE_PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
_JUNK = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                  st.text(max_size=12), st.lists(st.integers(-3, 3), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))


def _paths(node, prefix=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield prefix + (i,)
            yield from _paths(v, prefix + (i,))


ALL_PATHS = list(_paths(BASE_PARAMS))


@st.composite
def mutated_params(draw):
    import copy

    data = copy.deepcopy(BASE_PARAMS)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(ALL_PATHS))
        parent = data
        try:
            for p in path[:-1]:
                parent = parent[p]
            op = draw(st.sampled_from(["set", "delete", "unknown_key"]))
            if op == "set":
                parent[path[-1]] = draw(_JUNK)
            elif op == "delete" and isinstance(parent, dict):
                parent.pop(path[-1], None)
            elif isinstance(parent, dict):
                parent[draw(st.text(min_size=1, max_size=8))] = draw(_JUNK)
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation changed the shape: that is part of the fun
    return data


def test_params_loading_property(tmp_path_factory):
    from apodistill.config import ParamsError, load_params, parse_params

    seen: Counter = Counter()

    @SETTINGS
    @given(st.one_of(mutated_params(), _JUNK))
    def check(data):
        try:
            p = parse_params(data)
        except ParamsError as err:
            msg = str(err)
            assert msg.startswith("params: ") and len(msg.splitlines()[-1]) > 10, msg
            seen["rejected"] += 1
            return
        assert p.dump()["teachers"]["roster"]
        seen["accepted"] += 1

    check()
    folder = tmp_path_factory.mktemp("params")

    @SETTINGS
    @given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                     mutated_params().map(lambda d: yaml.safe_dump(d).encode())))
    def check_file(raw):
        path = folder / "params.yaml"
        path.write_bytes(raw)
        try:
            load_params(path)
        except ParamsError as err:
            assert str(path) in str(err)
            seen["file rejected"] += 1
            return
        seen["file accepted"] += 1

    check_file()
    report("params loading", seen)


# --- server request validation ----------------------------------------------------------------

def _png_bytes(size: int = 64, mode: str = "L") -> bytes:
    from apodistill.data import render_study_image

    buf = io.BytesIO()
    render_study_image({"edema": 0.5}, max(size, 8), 1).convert(mode).resize((size, size)).save(buf, format="PNG")
    return buf.getvalue()


GOOD_PNG = _png_bytes()


@st.composite
def image_urls(draw):
    kind = draw(st.sampled_from(["good", "corrupt", "random", "remote", "not_image", "not_base64", "text", "json"]))
    if kind == "good":
        return "data:image/png;base64," + base64.b64encode(GOOD_PNG).decode()
    if kind == "corrupt":  # a real PNG with bytes flipped or cut
        b = bytearray(GOOD_PNG)
        for _ in range(draw(st.integers(1, 6))):
            b[draw(st.integers(0, len(b) - 1))] = draw(st.integers(0, 255))
        return "data:image/png;base64," + base64.b64encode(bytes(b[: draw(st.integers(8, len(b)))])).decode()
    if kind == "random":
        return "data:image/png;base64," + base64.b64encode(draw(st.binary(max_size=64))).decode()
    if kind == "remote":
        return "https://example.org/x.png"
    if kind == "not_image":
        return "data:text/plain;base64,aGVsbG8="
    if kind == "not_base64":
        return "data:image/png;base64," + draw(st.text(max_size=20))
    if kind == "json":
        return draw(_JUNK)
    return draw(st.text(max_size=30))


_PART = st.one_of(
    st.fixed_dictionaries({"type": st.just("image_url"), "image_url": st.fixed_dictionaries({"url": image_urls()})}),
    st.fixed_dictionaries({"type": st.just("image_url"), "image_url": image_urls()}),
    st.fixed_dictionaries({"type": st.just("text"), "text": st.one_of(st.text(max_size=30), _JUNK)}),
    st.fixed_dictionaries({"type": st.text(max_size=8)}),
    _JUNK,
)
_MESSAGE = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "tool", ""]),
                           "content": st.one_of(st.text(max_size=30), st.lists(_PART, max_size=4), _JUNK)}),
    _JUNK,
)


@st.composite
def chat_bodies(draw):
    """A valid request with each field kept (mostly) or replaced by something hostile, or junk."""
    if draw(st.integers(0, 9)) == 0:
        return draw(_JUNK)
    good_image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(GOOD_PNG).decode()}}
    keep = st.integers(0, 3).map(bool)  # 3 in 4: keep the valid value
    parts = [{"type": "text", "text": "Read this."}, good_image] if draw(keep) else draw(st.lists(_PART, max_size=4))
    if draw(st.integers(0, 4)) == 0:
        parts = parts + [good_image]  # a prior/current pair
    message = {"role": "user", "content": parts} if draw(keep) else draw(_MESSAGE)
    messages = [message] if draw(keep) else draw(st.lists(_MESSAGE, max_size=3))
    body = {"model": "student", "messages": messages}
    valid = {"max_tokens": st.integers(1, 500), "max_completion_tokens": st.integers(1, 500),
             "temperature": st.floats(0, 2), "stream": st.booleans(), "n": st.just(1)}
    for key, good in valid.items():
        if draw(st.booleans()):
            body[key] = draw(good) if draw(keep) else draw(_JUNK)
    if body.get("stream") is True and draw(st.booleans()):
        body["stream_options"] = {"include_usage": draw(st.booleans())} if draw(keep) else draw(_JUNK)
    return body


def test_server_request_validation_property():
    from apodistill.serving.server import BadRequest, ChatRequest, parse_chat_request

    seen: Counter = Counter()

    @SETTINGS
    @given(chat_bodies(), st.sampled_from(["student", "client"]))
    def check(body, mode):
        try:
            req = parse_chat_request(body, 64, mode)
        except BadRequest as err:
            assert err.message and 400 <= err.status < 500 and err.code
            seen["rejected"] += 1
            return
        assert isinstance(req, ChatRequest) and 1 <= req.max_new <= 64 and isinstance(req.stream, bool)
        assert req.temperature is None or (0 <= req.temperature < math.inf)
        seen["accepted"] += 1

    check()

    from PIL import Image

    from apodistill.serving.input_check import build_profile, check_image

    profile = build_profile([Image.open(io.BytesIO(_png_bytes(64))) for _ in range(20)] +
                            [Image.open(io.BytesIO(_png_bytes(96))) for _ in range(5)])

    @SETTINGS
    @given(st.sampled_from(["L", "RGB", "RGBA", "LA", "P", "1", "I;16", "I", "F", "CMYK"]), st.integers(1, 160),
           st.integers(1, 160), st.binary(min_size=0, max_size=64), st.booleans())
    def check_images(mode, w, h, seed, radiograph):
        if radiograph:  # a real radiograph in any mode and shape
            im = Image.open(io.BytesIO(GOOD_PNG)).resize((w, h)).convert(mode)
        else:
            im = Image.frombytes("L", (w, h), (seed * (w * h // max(1, len(seed)) + 1))[: w * h] if seed else bytes(w * h)).convert(mode)
        reason = check_image(im, profile)
        assert reason is None or (isinstance(reason, str) and reason)
        seen["image refused" if reason else "image passed"] += 1

    check_images()
    report("server request validation", seen)
