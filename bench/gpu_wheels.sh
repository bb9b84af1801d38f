#!/bin/sh
# Wheels that bench/gpu_check.sh needs on the GPU machine, which has no network and no pip
# index: its python3 (3.12) has torch, transformers 5.17, accelerate, peft, numpy, pandas,
# pyarrow, but no trl, datasets or pydantic. Run this here, in the repository root; the
# device command then carries the (git-ignored) .whl folder and installs it with
# `pip install --no-index --no-deps --target /tmp/site .whl/*.whl`. Versions are the ones
# constraints.txt locks (transformers and peft too, so the GPU runs the project's versions).
set -eu
cd "$(dirname "$0")/.."
rm -rf .whl && mkdir -p .whl
py=${PYTHON:-python3}
$py -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
  trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 \
  pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 typing_extensions==4.16.0 \
  transformers==5.24.0 peft==0.21.2
ls -1 .whl
du -sh .whl
