#!/usr/bin/python3
"""The INT8 export of a CheXNet-class image model (contract hpcscreen.image/1): FX graph-mode
post-training static quantization of the eager torchvision model (the same weights options as
tools/export_chexnet.py: a TorchScript file cannot be quantized this way), calibrated on images
preprocessed exactly as the metadata says, written as a traced TorchScript model with the same
hpcscreen.json plus "precision": "int8-static" and "quantization" (engine, calibration).

  /usr/bin/python3 tools/quantize_image_model.py --checkpoint model.pth.tar \\
      --calibrate IMAGES_DIR_OR_LIST [--n 200] --out chexnet-int8.pt

--calibrate: a folder (its *.png, *.jpg, *.jpeg, by name) or a text file of image paths, one a
line; the first --n that open are used (a file that is not a usable image is skipped, saying
why). Calibrate on images like those the model will see (chest X-rays for CheXNet).

The quantized engine (onednn where this torch has it, else fbgemm) is recorded in
metadata["quantization"]["engine"]; a runner must select that engine before loading the model
(C++: at::globalContext().setQEngine(at::QEngine::ONEDNN)): packed weights are re-packed for the
current engine at load, and another engine gives other numbers. The classifier (Linear(1024, L)
and Sigmoid) stays in float32 unless --quantize-classifier: a quantized Sigmoid's output has
steps of 1/256, and the layer is <0.1% of the work.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402
import torchvision  # noqa: E402

from hpcscreen_py import chexnet  # noqa: E402

ENGINES = ("onednn", "fbgemm")
VERIFY_TOLERANCE = 1e-6  # the reloaded file against the quantized model in memory


def choose_engine(requested):
    supported = torch.backends.quantized.supported_engines
    if requested == "auto":
        for engine in ENGINES:
            if engine in supported:
                return engine
        raise chexnet.Refusal(f"this torch has neither of the quantized engines {ENGINES} "
                              f"(it has {supported})")
    if requested not in supported:
        raise chexnet.Refusal(f"--engine {requested}: this torch's quantized engines are "
                              f"{supported}")
    return requested


def calibration_batch(paths, pre, n, where):
    """(float32 [R, 3, S, S], the images used): the first n images that open (all when n is
    None), each preprocessed as metadata["preprocess"] says (ten rows per image for crop "ten").
    A file that is not a usable image (one `pack images` makes a pack reject) is skipped with a
    line saying why."""
    transform = chexnet.image_transform(pre)
    rows, used, skipped = [], [], 0
    for path in paths:
        if n is not None and len(used) == n:
            break
        try:
            image = chexnet.open_image(path)
        except (chexnet.Refusal, OSError, ValueError) as e:
            print(f"quantize_image_model: skipped {path}: {e}", file=sys.stderr)
            skipped += 1
            continue
        x = transform(image)
        rows.append(x if x.dim() == 4 else x.unsqueeze(0))
        used.append(path)
    if not used or (n is not None and len(used) < n):
        raise chexnet.Refusal(f"{where} has {len(used)} usable images ({skipped} skipped)"
                              + (f"; --n {n} asks for {n}" if n is not None else ""))
    shapes = {tuple(r.shape[1:]) for r in rows}
    if len(shapes) > 1:  # crop "none" keeps each image's own shape
        raise chexnet.Refusal(f"the calibration images preprocess to different shapes {shapes} "
                              "(crop 'none'); give images of one size")
    return torch.cat(rows), used


def run_batches(model, x, batch):
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])


def quantize(model, engine, calibration, batch, quantize_classifier):
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = engine
    qconfig = get_default_qconfig_mapping(engine)
    float_modules = []
    if not quantize_classifier and hasattr(model, "classifier"):
        qconfig = qconfig.set_module_name("classifier", None)
        float_modules.append("classifier")
    try:
        prepared = prepare_fx(model, qconfig, example_inputs=(calibration[:1],))
        run_batches(prepared, calibration, batch)
        return convert_fx(prepared), float_modules
    except Exception as e:  # FX tracing, observers or the engine's kernels
        raise chexnet.Refusal(f"FX post-training quantization failed on this torch "
                              f"({torch.__version__}, engine {engine}): "
                              f"{type(e).__name__}: {e}") from e


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    chexnet.add_model_arguments(p)
    p.add_argument("--calibrate", required=True, metavar="DIR_OR_LIST",
                   help="calibration images: a folder or a file of paths, one a line")
    p.add_argument("--n", type=int, help="use the first N images (default: all)")
    p.add_argument("--batch", type=int, default=8, help="calibration batch (default 8)")
    p.add_argument("--engine", choices=("auto",) + ENGINES, default="auto",
                   help="quantized engine (auto: onednn if this torch has it, else fbgemm)")
    p.add_argument("--quantize-classifier", action="store_true",
                   help="quantize the Linear and Sigmoid too (probabilities in steps of 1/256)")
    args = p.parse_args()

    tmp = None
    try:
        if args.n is not None and args.n < 1:
            raise chexnet.Refusal(f"--n {args.n}: need at least one image")
        if args.batch < 1:
            raise chexnet.Refusal(f"--batch {args.batch}: need at least 1")
        chexnet.check_out_path(args.out, args.force)
        engine = choose_engine(args.engine)
        paths = chexnet.list_images(args.calibrate)
        model, meta = chexnet.model_from_args(args)
        calibration, paths = calibration_batch(paths, meta["preprocess"], args.n, args.calibrate)
        fp32 = run_batches(model, calibration, args.batch)

        started = time.time()
        quantized, float_modules = quantize(model, engine, calibration, args.batch,
                                            args.quantize_classifier)
        int8 = run_batches(quantized, calibration, args.batch)
        delta = (int8 - fp32).abs()
        example = chexnet.example_batch(meta, batch=2)
        with torch.no_grad():
            traced = torch.jit.trace(quantized, example, check_trace=False)
        meta["precision"] = "int8-static"
        meta["torchscript"] = "trace"
        meta["quantization"] = {
            "method": "post-training static, FX graph mode (torch.ao.quantization.quantize_fx "
                      "prepare_fx / convert_fx)",
            "engine": engine,
            "qconfig_mapping": f"get_default_qconfig_mapping({engine!r})",
            "float_modules": float_modules,
            "calibration_images": len(paths),
            "calibration_rows": len(calibration),
            "calibration_max_abs_diff_vs_fp32": round(delta.max().item(), 6),
            "calibration_mean_abs_diff_vs_fp32": round(delta.mean().item(), 6)}
        meta["exported_with"] = {"torch": torch.__version__,
                                 "torchvision": torchvision.__version__}
        tmp = chexnet.save(traced, args.out, meta, args.force)
        inputs = [example, calibration[:args.batch]]
        chexnet.verify_saved(tmp, meta, quantized, inputs, VERIFY_TOLERANCE)
        chexnet.publish(tmp, args.out, args.force)
        tmp = None
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    per_label = delta.max(0).values
    worst = int(per_label.argmax())
    print(f"wrote {args.out}: {meta['name']} int8-static (engine {engine}, classifier "
          f"{'int8' if not float_modules else 'float32'}), calibrated on {len(paths)} images "
          f"({len(calibration)} rows) in {time.time() - started:.1f} s")
    print(f"|p_int8 - p_fp32| on the calibration rows: max {delta.max().item():.4f} "
          f"({meta['labels'][worst]}), mean {delta.mean().item():.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
