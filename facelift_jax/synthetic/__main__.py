"""python -m facelift_jax.synthetic --out DIR: a contact sheet of the embedded synthetic source."""

import argparse

from facelift_jax.synthetic.sheet import contact_sheet


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m facelift_jax.synthetic", description=__doc__)
    p.add_argument("--out", required=True, help="output folder (PNG contact sheet + the clip it shows)")
    p.add_argument("--identities", type=int, default=4)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--first-latent", type=int, default=0)
    p.add_argument("--video-seed", type=int, default=0)
    args = p.parse_args(argv)
    path = contact_sheet(args.out, args.identities, args.image_size, args.first_latent, args.video_seed)
    print(path)


if __name__ == "__main__":
    main()
