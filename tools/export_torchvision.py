"""Export a torchvision ResNet-18/34/50 state_dict to safetensors, the way to bring pretrained
weights into ddn (ddn_resnet_new + ddn_params_load): every state_dict entry under its torchvision
name, in state_dict order, floats as F32 and the BN counters (num_batches_tracked) as I64.

Run with Debian's torch (/usr/bin/python3, not a pyenv python); nothing is downloaded:
    /usr/bin/python3 tools/export_torchvision.py --arch resnet50 --state-dict resnet50.pt \
        --output resnet50.safetensors
    /usr/bin/python3 tools/export_torchvision.py --arch resnet18 --random-seed 0 --output r18.st
"""
import argparse
import os
import sys

import torch
import torchvision

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures"))
from st import save  # noqa: E402

ARCHS = {"resnet18": torchvision.models.resnet18, "resnet34": torchvision.models.resnet34,
         "resnet50": torchvision.models.resnet50}

# --state-dict takes a file saved with torch.save(model.state_dict(), path) (a checkpoint dict
# holding it under "state_dict" or "model", and DataParallel's "module." prefix, are accepted);
# the weights are first loaded strictly into torchvision's model, so a file that does not fit the
# arch is refused here, naming the keys, rather than in C. --random-seed N builds the model with
# weights=None after torch.manual_seed(N). --check-output FILE also writes, for a seeded
# (1, 3, S, S) input `images`, the eval-mode backbone `features` (1, C, h, w) and `pooled` (1, C)
# computed in float64 (tests/test_resnet.c compares ddn with them at full width).


def write_state_dict(state_dict, path, metadata=None, float_dtype=torch.float32):
    """Writes every entry of a state_dict by name (float tensors as float_dtype, integer buffers
    as int64), in the state_dict's order. Shared with tools/fixtures/gen_resnet.py."""
    tensors = {}
    for name, t in state_dict.items():
        t = t.detach().cpu()
        tensors[name] = t.to(float_dtype) if t.is_floating_point() else t.to(torch.int64)
    save(path, tensors, metadata=metadata)
    return tensors


def read_state_dict(path):
    sd = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise SystemExit(f"{path}: not a state_dict (a dict of tensors)")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in sd.items()}


def backbone_features(model, x):
    """torchvision's _forward_impl up to layer4 (what ddn's features_only mode returns)."""
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    return model.layer4(model.layer3(model.layer2(model.layer1(x))))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", required=True, choices=sorted(ARCHS))
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--state-dict", metavar="FILE.pt")
    src.add_argument("--random-seed", type=int, metavar="N")
    ap.add_argument("--output", required=True, metavar="FILE.safetensors")
    ap.add_argument("--check-output", metavar="FILE.safetensors")
    ap.add_argument("--check-size", type=int, default=64, metavar="S")
    ap.add_argument("--check-seed", type=int, default=1)
    args = ap.parse_args()

    if args.random_seed is not None:
        torch.manual_seed(args.random_seed)
        model = ARCHS[args.arch](weights=None)
        source = (f"torchvision.models.{args.arch}(weights=None), "
                  f"torch.manual_seed({args.random_seed})")
    else:
        model = ARCHS[args.arch](weights=None)
        sd = read_state_dict(args.state_dict)
        try:  # strict: names the missing, unexpected and wrongly shaped keys when the arch differs
            model.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            raise SystemExit(f"{args.state_dict} does not fit {args.arch}: {e}")
        source = os.path.basename(args.state_dict)
    meta = {"format": "pt", "arch": args.arch, "source": source,
            "generator": "tools/export_torchvision.py", "torch": torch.__version__,
            "torchvision": torchvision.__version__}
    tensors = write_state_dict(model.state_dict(), args.output, meta)
    print(f"wrote {args.output}: {len(tensors)} tensors, {os.path.getsize(args.output)} bytes")

    if args.check_output:
        g = torch.Generator().manual_seed(args.check_seed)
        images = torch.randn((1, 3, args.check_size, args.check_size), generator=g)
        m64 = model.double().eval()
        with torch.no_grad():
            f = backbone_features(m64, images.double())
            pooled = torch.flatten(m64.avgpool(f), 1)
        save(args.check_output, {"images": images, "features": f.float(), "pooled": pooled.float()},
             metadata={"generator": "tools/export_torchvision.py --check-output",
                       "arch": args.arch, "mode": "eval, float64 reference"})
        print(f"wrote {args.check_output}: features {tuple(f.shape)}")


if __name__ == "__main__":
    main()
