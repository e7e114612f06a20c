"""Encode the bundled example photos into the example latents the demo ships (run once; results are committed).

Usage: LATENTBRIDGE_MODELS=../shared/weights/taesd .venv/bin/python scripts/make_examples.py
"""

from __future__ import annotations

import torch

from latentbridge import demo_data, io, spaces, tiny


def main() -> None:
    ctx = demo_data.load()
    for name, space in (("taef2", "flux2"), ("taesana", "sana")):
        model = tiny.load(name)
        with torch.inference_mode():
            latents = model.encode(ctx.images, domain="raw")
        spaces.validate(latents, space, "raw")
        path = demo_data.EXAMPLES / f"{space}.safetensors"
        io.save_latent(path, latents.half(), space=space, domain="raw", overwrite=True,
                       metadata={"latentbridge.source": f"{name} encoder on {', '.join(ctx.names)} (256 px)"})
        print(f"{path}: {tuple(latents.shape)}")


if __name__ == "__main__":
    main()
