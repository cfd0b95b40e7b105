"""PyTorch conv2d baseline for bench_kernels' conv2d rows (same names, same shapes: ResNet-50 layers
at batch 32 in NCHW, one depthwise 3x3). ciuic's defaults are matched: no TF32 for f32, cuDNN's
heuristic algorithm choice (benchmark off). PyTorch may pick non-deterministic backward algorithms,
ciuic by default does not. Each result is one JSON line (kind "kernel", name, ms: a mean over the
iterations, tflops), printed and appended to $RESULTS_DIR/torch_baseline.jsonl (default: .).
Usage: python3 bench/torch_conv.py"""
import json, os
import torch
import torch.nn.functional as F

RESULTS_DIR = os.environ.get("RESULTS_DIR", ".")

def emit(log, **kw):
    kw["device"] = torch.cuda.get_device_name(0); kw["torch"] = torch.__version__
    print(json.dumps(kw), flush=True); log.write(json.dumps(kw) + "\n"); log.flush()

def timeit(fn, iters=20, warm=5):
    for _ in range(warm): fn()
    torch.cuda.synchronize(); e0, e1 = torch.cuda.Event(True), torch.cuda.Event(True)
    e0.record()
    for _ in range(iters): fn()
    e1.record(); torch.cuda.synchronize(); return e0.elapsed_time(e1) / iters

# (N, Cin, HW, Cout, k, stride, pad, groups, dtype): keep in step with bench_conv() in bench_kernels.cpp.
CONVS = [(32, 3, 224, 64, 7, 2, 3, 1, "fp16"), (32, 64, 56, 64, 3, 1, 1, 1, "fp16"),
         (32, 256, 56, 64, 1, 1, 0, 1, "fp16"), (32, 128, 56, 128, 3, 2, 1, 1, "fp16"),
         (32, 128, 28, 128, 3, 1, 1, 1, "fp16"), (32, 256, 14, 256, 3, 1, 1, 1, "fp16"),
         (32, 512, 7, 512, 3, 1, 1, 1, "fp16"), (32, 256, 28, 256, 3, 1, 1, 256, "fp16"),
         (32, 64, 56, 64, 3, 1, 1, 1, "bf16"), (32, 64, 56, 64, 3, 1, 1, 1, "fp32")]
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}

def main():
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    log = open(os.path.join(RESULTS_DIR, "torch_baseline.jsonl"), "a")
    for (n, cin, hw, cout, k, s, p, g, tag) in CONVS:
        dt = DTYPES[tag]
        name = f"N{n}_C{cin}x{hw}x{hw}_K{cout}x{k}x{k}_s{s}" + (f"_g{g}" if g > 1 else "")
        out = (hw + 2 * p - k) // s + 1
        flops = 2.0 * n * cout * out * out * (cin // g) * k * k
        x = torch.randn(n, cin, hw, hw, device="cuda", dtype=dt, requires_grad=True)
        w = (0.05 * torch.randn(cout, cin // g, k, k, device="cuda", dtype=dt)).requires_grad_(True)
        go = torch.randn(n, cout, out, out, device="cuda", dtype=dt)
        with torch.no_grad():
            ms = timeit(lambda: F.conv2d(x, w, None, s, p, 1, g))
        emit(log, kind="kernel", name=f"conv2d_fwd_{tag}_{name}", ms=round(ms, 4), tflops=round(flops / ms / 1e9, 1))
        ms = timeit(lambda: torch.autograd.grad(F.conv2d(x, w, None, s, p, 1, g), (x, w), go))
        emit(log, kind="kernel", name=f"conv2d_fwdbwd_{tag}_{name}", ms=round(ms, 4), tflops=round(3 * flops / ms / 1e9, 1))

if __name__ == "__main__":
    main()
