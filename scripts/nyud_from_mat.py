"""Convert the raw NYUDv2 download into the layout `dataset=nyud` reads (FCN's):

    python scripts/nyud_from_mat.py nyu_depth_v2_labeled.mat classMapping40.mat splits.mat OUT

writes OUT/data/images/img_<id>.png, OUT/data/depth/img_<id>.png (millimetres, uint16), OUT/segmentation/
img_<id>.mat (40 classes, 0 = void) and OUT/{trainval,test}.txt (795 / 654 ids, id = 5000 + 1-based index).
HHA images need Gupta et al.'s encoder (github.com/s-gupta/rcnn-depth) and go in OUT/data/hha/.
"""
import argparse

from segtrain.data.nyud import convert_labeled_mat


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("labeled_mat", "class_mapping_mat", "splits_mat", "out"):
        parser.add_argument(name)
    args = parser.parse_args()
    count = convert_labeled_mat(args.labeled_mat, args.class_mapping_mat, args.splits_mat, args.out)
    print(f"wrote {count} images to {args.out}")


if __name__ == "__main__":
    main()
