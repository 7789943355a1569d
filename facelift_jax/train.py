"""Train the FaceLift regressor: ``python -m facelift_jax.train --config configs/default.py --workdir runs/default``.

Stages, top to bottom: pseudo-labels (run preprocessing when the workdir has none) → model and
optimizer (Adam, ×decay_rate every decay_epochs) → resume from the newest checkpoint → the loop
(mixed multi-view + multi-frame batches from grain, one jitted data-parallel step, metrics,
periodic evaluation and checkpoints) → final evaluation, plots and the export.

Workdir layout: ``config.json``, ``data/`` (preprocessing output and the cached test set),
``checkpoints/``, ``metrics.jsonl``, ``tb/`` (TensorBoard), ``plots/``, ``eval/``, ``export/``,
``logs/train.log`` (every log line, also the libraries' that the console leaves out: facelift_jax/logs.py).

Data parallelism: one mesh axis "data" over every device of every host; batches are sharded on
it, parameters and optimizer state replicated, so gradients are averaged by XLA's all-reduce.
Config batch sizes are global. Launched on several hosts (``--multihost`` or
``JAX_COORDINATOR_ADDRESS`` set), ``jax.distributed.initialize()`` runs first and each host reads
its own stride of every global batch.
"""

from __future__ import annotations

if __name__ == "__main__":  # python -m facelift_jax.train: glibc malloc tuned before jax starts threads
    from facelift_jax import allocator
    allocator.tune_malloc()

import contextlib
import dataclasses
import json
import logging
import os
import pathlib
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm import tqdm

from facelift_jax import batching, checkpointing, config_check, losses, views
from facelift_jax import io as fio
from facelift_jax import input_pipeline
from facelift_jax.evaluation import evaluator as evaluation
from facelift_jax.model import build_model

log = logging.getLogger("facelift_jax.train")


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN/inf; the message names the step. Checkpoints on disk stay good."""


# ----------------------------------------------------------------------------------------------
# Optimizer
# ----------------------------------------------------------------------------------------------

def learning_rate_schedule(optim, steps_per_epoch: int) -> optax.Schedule:
    """lr · decay_rate^⌊step / (decay_epochs · steps_per_epoch)⌋ after an optional linear warm-up."""
    decay = optax.exponential_decay(
        init_value=float(optim.learning_rate), transition_steps=max(int(optim.decay_epochs * steps_per_epoch), 1),
        decay_rate=float(optim.decay_rate), staircase=True)
    warmup = int(optim.warmup_steps)
    if warmup <= 0:
        return decay
    ramp = optax.linear_schedule(0.0, float(optim.learning_rate), warmup)
    return optax.join_schedules([ramp, lambda s: decay(s)], [warmup])


def make_optimizer(optim, schedule) -> optax.GradientTransformation:
    clip = float(optim.clip_norm)
    adam = optax.adam(schedule)
    return optax.chain(optax.clip_by_global_norm(clip), adam) if clip > 0 else adam


# ----------------------------------------------------------------------------------------------
# Loss and the jitted step
# ----------------------------------------------------------------------------------------------

BRANCHES = ("multiview", "multiframe")


def compute_loss(model, batch: dict, loss_config, normals) -> tuple[jax.Array, dict]:
    """L = L_mv + L_mf (eq. 3 + eq. 4) on a mixed batch; both halves go through one forward pass.

    The multi-frame mask is the detector-confidence mask AND the normal-template visibility of the
    stop-gradient predicted rotation (eq. 4): the mask must not be a path for gradients.
    """
    names = [k for k in BRANCHES if k in batch]
    sizes = [batch[k]["image"].shape[0] for k in names]
    pred = model(jnp.concatenate([batch[k]["image"] for k in names]))
    total, metrics, start = 0.0, {}, 0
    for name, size in zip(names, sizes):
        part = jax.tree.map(lambda x, s=start, n=size: x[s:s + n], pred)
        start += size
        if name == "multiview":
            loss, terms = losses.multiview_loss(part, batch[name], loss_config)
        else:
            visible = views.normal_visibility_mask(jax.lax.stop_gradient(part.rotation), normals,
                                                   float(loss_config.normal_threshold))
            loss, terms = losses.multiframe_loss(part, dict(batch[name], mask=batch[name]["mask"] & visible),
                                                 loss_config)
            terms = dict(terms, visible_fraction=jnp.mean(visible))
        total = total + loss
        metrics.update({f"{name}/{k}": v for k, v in terms.items()})
    metrics["loss"] = total
    return total, metrics


def make_train_step(graphdef, tx, schedule, loss_config, normals):
    """(params, opt_state, rest, batch, step) → (params, opt_state, metrics), jitted with the
    parameter and optimizer buffers donated. A non-finite loss leaves params and opt_state as
    they were (``metrics["finite"]`` False) so the last good state is never overwritten."""

    def train_step(params, opt_state, rest, batch, step):
        def loss_fn(p):
            return compute_loss(nnx.merge(graphdef, p, rest), batch, loss_config, normals)

        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, new_opt = tx.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        # Checked after the update too: a finite loss can still step into inf parameters.
        finite = jnp.isfinite(loss) & jnp.isfinite(optax.global_norm(grads)) & jnp.isfinite(optax.global_norm(new_params))
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
        metrics.update(grad_norm=optax.global_norm(grads), learning_rate=schedule(step), finite=finite)
        return keep(new_params, params), keep(new_opt, opt_state), metrics

    return jax.jit(train_step, donate_argnums=(0, 1))


# ----------------------------------------------------------------------------------------------
# Devices
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Placement:
    """The one-axis "data" mesh: batches sharded on it, everything else replicated."""

    mesh: jax.sharding.Mesh

    @classmethod
    def create(cls) -> "Placement":
        return cls(batching.data_mesh())

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())

    @property
    def batch(self) -> NamedSharding:
        return NamedSharding(self.mesh, P("data"))

    def replicate(self, tree):
        return jax.device_put(tree, self.replicated)

    def shard_batch(self, local_batch):
        """This host's numpy share of a global batch → global arrays sharded on "data"."""
        return jax.tree.map(lambda x: jax.make_array_from_process_local_data(self.batch, np.asarray(x)), local_batch)


# ----------------------------------------------------------------------------------------------
# Logging
# ----------------------------------------------------------------------------------------------

class MetricWriter:
    """Scalars to TensorBoard event files (``tb/``) and to ``metrics.jsonl``; host 0 only."""

    def __init__(self, workdir: pathlib.Path, enabled: bool):
        self.enabled = enabled
        if enabled:
            from tensorboardX import SummaryWriter

            self.tb = SummaryWriter(str(workdir / "tb"))
            self.jsonl = open(workdir / "metrics.jsonl", "a")

    def write(self, step: int, split: str, scalars: dict) -> None:
        if not self.enabled:
            return
        clean = {k: float(v) for k, v in scalars.items() if np.ndim(v) == 0 and np.isfinite(float(v))}
        for k, v in clean.items():
            self.tb.add_scalar(f"{split}/{k}", v, step)
        self.jsonl.write(json.dumps({"step": int(step), "split": split, **clean}) + "\n")
        self.jsonl.flush()

    def close(self) -> None:
        if self.enabled:
            self.tb.close()
            self.jsonl.close()


# ----------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------

def prepare_data(config, workdir: pathlib.Path) -> pathlib.Path:
    """``workdir/data`` with pseudo-labels, running preprocessing first when they are missing and
    refusing them (ValueError naming what differs) when they were made with another plan."""
    from facelift_jax import preprocess

    data_dir = workdir / "data"
    if not (preprocess.finished(data_dir) and input_pipeline.has_pseudo_labels(data_dir)):
        # also after a kill part-way through: preprocessing is restartable, sealed chunks and
        # finished clips are kept, and it refuses chunks of another plan itself
        log.info("preprocessing in %s is missing or unfinished: running it", data_dir)
        preprocess.run_preprocess(config, data_dir)
    else:  # reused: only if this config would have made them the same way
        preprocess.check_plan(config, data_dir)
    return data_dir


def check_config(config) -> None:
    """The training stage's config check (facelift_jax/config_check.py), batch sizes against the devices."""
    config_check.check(config, "train", num_devices=jax.device_count(), process_count=jax.process_count())


@dataclasses.dataclass
class TrainState:
    """Everything the loop carries: the model split into its static graph, trained parameters (a
    pure dict, replicated) and other state (the template), plus the optimizer and its state."""

    graphdef: nnx.GraphDef
    params: dict
    rest: nnx.State
    opt_state: optax.OptState
    tx: optax.GradientTransformation
    schedule: optax.Schedule
    step: int = 0


def create_train_state(config, template, steps_per_epoch: int, placement: Placement) -> TrainState:
    model = build_model(config.model, template, rngs=nnx.Rngs(int(config.seed)))
    load_pretrained(config, model)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    params = placement.replicate(params.to_pure_dict())
    schedule = learning_rate_schedule(config.optim, steps_per_epoch)
    tx = make_optimizer(config.optim, schedule)
    return TrainState(graphdef, params, placement.replicate(rest), placement.replicate(tx.init(params)), tx, schedule)


def restore_train_state(ckpt: checkpointing.Checkpointer, state: TrainState, placement: Placement):
    """(state, data iterator state) from the newest readable checkpoint; unchanged state and None if
    none. A damaged newer checkpoint (truncated or missing file, missing item) is moved to
    ``checkpoints/damaged/`` with a warning naming it and why (``Checkpointer.restore_latest``); a
    config that no longer matches the checkpoints raises instead. Targets come from jax.eval_shape,
    placed replicated on the mesh."""
    def abstract(tree):
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=placement.replicated), tree)

    restored = ckpt.restore_latest(abstract(jax.eval_shape(lambda: state.params)),
                                   abstract(jax.eval_shape(state.tx.init, state.params)))
    if restored is None:
        return state, None
    log.info("resuming from the checkpoint of step %d in %s", restored.step, ckpt.directory)
    return dataclasses.replace(state, params=restored.params, opt_state=restored.opt_state,
                               step=restored.step), restored.data_state


class Throughput:
    """Images per second of the training steps alone: from the second step (the first one
    compiles), with evaluation time left out."""

    def __init__(self, images_per_step: int):
        self.images_per_step, self.steps, self.t0, self.paused = images_per_step, 0, None, 0.0

    def step(self) -> float:
        if self.t0 is None:
            self.t0 = time.perf_counter()
        else:
            self.steps += 1
        return self.rate

    @property
    def rate(self) -> float:
        if self.t0 is None:
            return 0.0
        return self.images_per_step * self.steps / max(time.perf_counter() - self.t0 - self.paused, 1e-9)

    def pause(self, seconds: float) -> None:
        self.paused += seconds


def train_loop(config, state: TrainState, batches, train_step, placement: Placement, ckpt, writer, evaluator,
               steps_per_epoch: int, meta: dict, stop_after: int | None) -> tuple[TrainState, float]:
    """Steps state.step+1 … num_steps (or stop_after): log, evaluate, checkpoint. Returns the final
    state and the throughput (images/s)."""
    num_steps = int(config.train.num_steps)
    speed = Throughput(int(config.batch.multiview) + int(config.batch.multiframe))
    params, opt_state, window = state.params, state.opt_state, []
    last = min(num_steps, stop_after) if stop_after else num_steps
    with tqdm(total=num_steps, initial=state.step, desc="train", disable=jax.process_index() != 0,
              dynamic_ncols=True) as bar:
        for step in range(state.step + 1, last + 1):
            batch = placement.shard_batch(next(batches))
            params, opt_state, metrics = train_step(params, opt_state, state.rest, batch, jnp.asarray(step - 1))
            metrics = jax.device_get(metrics)
            if not bool(metrics.pop("finite")):
                raise NonFiniteLossError(
                    f"non-finite loss or update at step {step} (loss={metrics['loss']}, grad_norm="
                    f"{metrics['grad_norm']}); stopping. The parameters of step {step - 1} were kept; the newest "
                    f"checkpoint on disk is step {ckpt.latest_step()} in {ckpt.directory}")
            rate = speed.step()
            window.append(metrics)
            bar.update(1)
            bar.set_postfix(loss=f"{float(metrics['loss']):.4f}", img_s=f"{rate:.1f}")
            if step % int(config.train.log_every) == 0 or step == last:
                mean = {k: float(np.mean([m[k] for m in window])) for k in window[0]}
                writer.write(step, "train", dict(mean, images_per_second=rate, epoch=step / steps_per_epoch))
                window = []
            if evaluator and int(config.train.eval_every) > 0 and step % int(config.train.eval_every) == 0 \
                    and step < num_steps:
                t = time.perf_counter()
                writer.write(step, "eval", evaluator.scalars(evaluator.run(params, state.rest)))
                speed.pause(time.perf_counter() - t)
            if ckpt.should_save(step) or step == last:
                ckpt.save(step, params, opt_state, batches.get_state(), dict(meta, images_per_second=rate))
    return dataclasses.replace(state, params=params, opt_state=opt_state, step=last), speed.rate


def train_and_evaluate(config: ml_collections.ConfigDict, workdir, *, stop_after: int | None = None) -> dict:
    """Train (resuming from ``workdir/checkpoints`` if any), evaluate, plot and export.

    ``stop_after``: stop right after this step's checkpoint, as if the job were preempted (no final
    evaluation or export); running again resumes. Returns the final evaluation (evaluation/evaluator.py;
    empty when stopped early or when ``train.eval_every`` < 0). A second run into the same workdir
    is refused (``io.WorkdirLockedError`` naming it and the holder's pid) while this one runs.
    """
    check_config(config)
    workdir = pathlib.Path(workdir)
    is_main = jax.process_index() == 0
    workdir.mkdir(parents=True, exist_ok=True)
    # the main process only: the other hosts of a multi-host run share the workdir by design
    with fio.lock_workdir(workdir, "training workdir") if is_main else contextlib.nullcontext():
        return _train_and_evaluate(config, workdir, is_main, stop_after)


def _train_and_evaluate(config, workdir: pathlib.Path, is_main: bool, stop_after: int | None) -> dict:
    if is_main:
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
    data_dir = prepare_data(config, workdir)
    placement = Placement.create()
    template = input_pipeline.load_template(data_dir)
    steps_per_epoch = input_pipeline.steps_per_epoch(config, data_dir)

    state = create_train_state(config, template, steps_per_epoch, placement)
    normals = jnp.asarray(views.normal_template(template))
    train_step = make_train_step(state.graphdef, state.tx, state.schedule, config.loss, normals)
    ckpt = checkpointing.Checkpointer(workdir / "checkpoints", keep=int(config.train.keep_checkpoints),
                                      every=int(config.train.checkpoint_every),
                                      async_save=bool(config.train.async_checkpoint))
    state, data_state = restore_train_state(ckpt, state, placement)
    batches = input_pipeline.train_iterator(config, data_dir, process_index=jax.process_index(),
                                      process_count=jax.process_count(), state=data_state)
    evaluator = evaluation.Evaluator(config, data_dir, state.graphdef, placement) if config.train.eval_every >= 0 else None
    writer = MetricWriter(workdir, is_main)
    meta = {"config": json.loads(config.to_json_best_effort()), "steps_per_epoch": steps_per_epoch}
    start = state.step
    try:
        state, rate = train_loop(config, state, batches, train_step, placement, ckpt, writer, evaluator,
                                 steps_per_epoch, meta, stop_after)
        if stop_after is not None and state.step < int(config.train.num_steps):
            log.info("stopped after step %d as asked; running again resumes", state.step)
            return {}
        results = {}
        if evaluator:
            results = evaluator.run(state.params, state.rest)
            results["images_per_second"] = rate if state.step > start else None
            writer.write(state.step, "eval", evaluator.scalars(results))
    finally:
        ckpt.close()
        writer.close()
    if is_main and evaluator:
        results["plots"] = evaluator.write_report(results, workdir)
        results["categories"] = category_tables(evaluator, results, workdir)
    if is_main and config.train.export:
        results["export"] = str(export(workdir))
        photos = evaluate_photos(config, results["export"], workdir)
        if photos is not None:
            results["photos"] = photos
            if results.get("categories"):  # the category tables end with the real photos' table
                tables = pathlib.Path(results["categories"])
                tables.write_text(tables.read_text() + "\n" + pathlib.Path(photos["files"]["markdown"]).read_text())
    return results


def photos_folder(config) -> pathlib.Path | None:
    """The hand-annotated photos ``config.eval.photos`` names: "auto" = the ones ``make`` installs
    (``<venv>/share/annotated-faces``) when they are there, "" = none, else that folder."""
    from facelift_jax.evaluation.datasets import annotated

    spec = str(config.eval.get("photos", "auto"))
    if not spec:
        return None
    folder = annotated.default_folder() if spec == "auto" else pathlib.Path(spec)
    return folder if folder.is_dir() else None


def evaluate_photos(config, export_dir, workdir: pathlib.Path) -> dict | None:
    """The exported model on the annotated real photos, fed as ``predict`` feeds a photo, beside the
    MediaPipe bridge's own points (``evaluate --data annotated``): ``eval/photos/``. None when there
    are no photos or no MediaPipe bridge (logged)."""
    folder = photos_folder(config)
    if folder is None:
        return None
    from facelift_jax import evaluate as evaluate_lib
    from facelift_jax.evaluation import datasets
    from facelift_jax.predict import Predictor

    try:
        photos = datasets.load(f"annotated:{folder}", config)
    except RuntimeError as e:  # no MediaPipe bridge to crop them as predict does
        log.warning("real photos not evaluated: %s", e)
        return None
    predictor = Predictor.load(export_dir, batch_size=int(config.eval.batch_size))
    return evaluate_lib.evaluate(predictor, photos, workdir / "eval" / "photos", config=config, progress=False)


def category_tables(evaluator: evaluation.Evaluator, results: dict, workdir: pathlib.Path) -> str:
    """``eval/categories/results.md`` (+ ``.json``): NME, NMLC, 3D and pose error per region and pose
    category of the final model and both baselines, from the final evaluation's predictions."""
    return evaluator.write_tables(results, workdir / "eval" / "categories")["markdown"]


def load_pretrained(config, model) -> None:
    """Encoder weights named by ``config.model.pretrained`` ("" = from scratch), via the torch bridge:
    MediaPipe's face-mesh CNN ("mediapipe" or a .tflite) for ``encoder="face_mesh"``, EfficientNet-Lite0
    ("imagenet" or a .pth) for ``encoder="efficientnet_lite0"``, FaRL/CLIP otherwise."""
    path = config.model.pretrained
    if not path:
        return
    if config.model.encoder == "face_mesh":
        from bridges import face_mesh  # TFLite's schema lives in bridges/ only

        face_mesh.load_pretrained(model.encoder, path)
        return
    if config.model.encoder == "efficientnet_lite0":
        from bridges import efficientnet  # torch lives in bridges/ only

        efficientnet.load_pretrained(model.encoder, path)
        return
    from bridges import farl  # torch lives in bridges/ only

    farl.load_pretrained(model, path)


def export(workdir: pathlib.Path) -> pathlib.Path:
    """``workdir/export``: the newest checkpoint's parameters + metadata (export.py)."""
    from facelift_jax import export as export_lib

    return pathlib.Path(export_lib.export_model(workdir, workdir / "export"))


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------

def final_report(results: dict, wall_seconds: float, log_file=None) -> str:
    """The table ``train`` ends with: held-out metrics of the model beside both baselines (×100 for
    NME / NMLC), the wall time, and where the pictures, tables, export and log are."""
    rows = [("multiview", "nmlc", "multi-view NMLC (full)"), ("multiview", "nme", "multi-view NME (full)"),
            ("multiview", "pose_error_deg", "multi-view pose error (°)"),
            ("multiview", "landmarks3d_nme", "multi-view 3D error (% IOD)"),
            ("multiframe", "nme", "video frames NME (full)"), ("multiframe", "pose_error_deg", "video frames pose error (°)")]

    def cell(method: dict | None, part: str, metric: str) -> str:
        value = ((method or {}).get(part) or {}).get(metric)
        if isinstance(value, dict):
            value = value.get("full")
        return "–" if value is None else f"{float(value):.2f}"

    lines = [f"{'held-out':30s} {'model':>8s} {'2D detector + PnP':>18s} {'template, true pose':>20s}"] \
        if any(part in results for part, _, _ in rows) else []
    for part, metric, label in rows:
        if part in results:
            lines.append(f"{label:30s} {cell(results, part, metric):>8s} "
                         f"{cell(results.get('detector_baseline'), part, metric):>18s} "
                         f"{cell(results.get('baseline'), part, metric):>20s}")
    photos = results.get("photos")
    if photos and "nme" in photos:
        base = next(iter((photos.get("baselines") or {}).values()), {}).get("nme", {}).get("regions", {}).get("full")
        label = f"real photos NME ({photos['num_points']} pts, {photos['num_images']})"
        lines.append(f"{label:30s} {photos['nme']['regions']['full']:8.2f}   MediaPipe bridge on the same crops: "
                     + ("–" if base is None else f"{base:.2f}"))
    minutes, seconds = divmod(int(round(wall_seconds)), 60)
    speed = f", {results['images_per_second']:.1f} training images/s" if results.get("images_per_second") else ""
    lines.append(f"wall time {minutes} min {seconds:02d} s{speed}")
    plots = results.get("plots") or {}
    where = [("pictures", ", ".join(str(v) for v in plots.values()) if plots else None),
             ("tables", results.get("categories")), ("export", results.get("export")), ("log", log_file)]
    lines += [f"{name + ':':10s}{value}" for name, value in where if value]
    return "\n".join(lines)


def main(argv, flag_values=None) -> int:
    """``python -m facelift_jax.train``'s work once its flags are parsed (absl ``FLAGS`` or ``flag_values``)."""
    from absl import flags

    from facelift_jax import logs

    del argv
    FLAGS = flag_values if flag_values is not None else flags.FLAGS
    if FLAGS.multihost or os.environ.get("JAX_COORDINATOR_ADDRESS"):
        jax.distributed.initialize()
    start = time.perf_counter()
    with logs.session("train", logs.absl_verbosity(FLAGS)) as session:
        check_config(FLAGS.config)  # before the workdir, preprocessing or any other long work
        session.log_to(FLAGS.workdir)
        results = train_and_evaluate(FLAGS.config, FLAGS.workdir)
        if results and jax.process_index() == 0:
            print(final_report(results, time.perf_counter() - start, session.log_file))
    return 0


def cli(argv) -> int:
    """The command line in-process, on a fresh set of flags (tests): ``cli(["--config", ..., ...])``
    → the exit status ``python -m facelift_jax.train ...`` would have."""
    from absl import flags

    from facelift_jax import logs

    flag_values, argv = flags.FlagValues(), ["train", *argv]
    _define_flags(flag_values, sys_argv=argv)  # ml_collections finds the --config.x=v overrides in sys_argv
    logs.define_verbosity(flag_values)
    try:
        logs.parse_absl_flags(argv, flag_values)
    except SystemExit as e:
        return int(e.code)
    return logs.main_guard(main)(None, flag_values=flag_values)


def _define_flags(flag_values=None, sys_argv=None):
    from absl import flags
    from ml_collections import config_flags

    fv = flag_values if flag_values is not None else flags.FLAGS
    config_flags.DEFINE_config_file("config", None, "experiment config file (configs/*.py[:arg]); override fields "
                                    "with --config.section.field=value", flag_values=fv, lock_config=True,
                                    sys_argv=sys_argv)
    flags.DEFINE_string("workdir", None, "output directory (pseudo-labels, checkpoints, metrics, plots, export, "
                        "logs/train.log)", flag_values=fv)
    flags.DEFINE_bool("multihost", False, "call jax.distributed.initialize() (multi-host launch)", flag_values=fv)
    flags.mark_flags_as_required(["config", "workdir"], flag_values=fv)


if __name__ == "__main__":
    from absl import app

    from facelift_jax import logs

    _define_flags()
    app.run(logs.main_guard(main), flags_parser=logs.parse_absl_flags)
