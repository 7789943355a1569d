"""Preprocessing split over processes (``--process_index/--process_count``): 2 local processes
sharing one output folder give pseudo-labels bit-identical to 1 process, each lifts only its stride
of the chunks, and process 0 waits for (and names) the chunks of the others."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from configs import default as default_config
from facelift_jax import preprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]
NUM_LATENTS, CHUNK = 5, 1  # 5 chunks: process 0 lifts 0, 2, 4; process 1 lifts 1, 3

# One process of the split: spies on which chunks it lifts, prints them as JSON on the last line.
WORKER = """
import json, sys
from configs import default
from facelift_jax import preprocess
c = default.get_config()
c.image_size = 32
c.preprocess.num_latents, c.preprocess.chunk_size, c.preprocess.render_batch = {n}, {chunk}, 32
done = []
finish = preprocess._Chunks._finish
preprocess._Chunks._finish = lambda self, start, stop, parts: (done.append(start), finish(self, start, stop, parts))
preprocess.run_multiview(c, __import__("pathlib").Path(sys.argv[1]), progress=False,
                         process_index=int(sys.argv[2]), process_count=2, wait_timeout_s=600, poll_s=0.2)
print(json.dumps(done))
"""


def _config():
    c = default_config.get_config()
    c.image_size = 32  # the synthetic detector works on geometry: tiny images are enough
    c.preprocess.num_latents, c.preprocess.chunk_size, c.preprocess.render_batch = NUM_LATENTS, CHUNK, 32
    return c


@pytest.mark.slow  # ~60 s on 2 busy cores: three JAX processes compile the renderer and the lifting
def test_two_processes_equal_one(tmp_path):
    split = tmp_path / "split"
    script = WORKER.format(n=NUM_LATENTS, chunk=CHUNK)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [subprocess.Popen([sys.executable, "-c", script, str(split), str(k)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in (0, 1)]
    # meanwhile, the reference: one process (this one), stages run one after the other
    single = tmp_path / "single"
    preprocess.run_multiview(_config(), single, progress=False, overlap=False)
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    lifted = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert sorted(lifted[0]) == [0, 2, 4] and sorted(lifted[1]) == [1, 3]  # each its own stride, once

    with np.load(single / "multiview" / "pseudo_labels.npz") as f1, np.load(split / "multiview" / "pseudo_labels.npz") as f2:
        assert f1.files == f2.files
        for k in f1.files:
            assert f1[k].dtype == f2[k].dtype and np.array_equal(f1[k], f2[k], equal_nan=True), k
        assert np.array_equal(f2["latents"], np.arange(NUM_LATENTS))
    meta = json.loads((split / "multiview" / "metadata.json").read_text())
    assert meta["num_latents"] == NUM_LATENTS

    # process 0 alone, process 1's chunks gone: it waits, then names them and who owns them
    for p in (split / "multiview" / "chunks").glob("chunk_000000003_*"):
        p.unlink()
    with pytest.raises(TimeoutError, match=r"1 chunk\(s\) .* missing .*chunk_000000003_000000003\.npz.*process\(es\) \[1\] of 2"):
        preprocess.run_multiview(_config(), split, progress=False, process_index=0, process_count=2,
                                 wait_timeout_s=0.5, poll_s=0.1)
