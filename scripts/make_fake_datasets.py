"""Write tiny fake copies of VOC 2012 (+ SBD, VOC2011), NYUDv2 (FCN's layout and the raw .mat), SIFT Flow,
Cityscapes and the `dataset=folder` layouts users ship (folder*, retina, tiles; README "Your own data"), in their
real file formats, to smoke-test segtrain's loading code on any machine:

    python scripts/make_fake_datasets.py OUT
    SEGTRAIN_DATA=OUT segtrain dataset=voc model.width=0.125 trainer.max_iters=20
"""
import argparse

from segtrain.data.fake import make_fake_datasets


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="folder to write (SEGTRAIN_DATA for the runs)")
    parser.add_argument("--size", type=int, default=48, help="image height in pixels (default 48)")
    args = parser.parse_args()
    out = make_fake_datasets(args.out, args.size)
    print(f"wrote fake voc, voc_aug (+SBD), nyud (+nyud_raw), siftflow, cityscapes and folder datasets (folder*, "
          f"retina, tiles) under {out}")
    print(f"try: SEGTRAIN_DATA={out} segtrain dataset=voc trainer.max_iters=20")


if __name__ == "__main__":
    main()
