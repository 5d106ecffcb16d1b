"""Flickr25k (MIRFlickr-25k), 24 concepts, from the mirflickr images + annotation files or from lists.

Sources of the image pool (protocol ``bihalf``, drawn with a seed):

* ``annotations``: ``<root>/mirflickr/im1.jpg`` ... ``im25000.jpg`` and
  ``<root>/mirflickr25k_annotations_v080/<concept>.txt`` for the 24 potential-label concepts (one
  1-based image number per line; the ``*_r1.txt`` "relevant" files are not used). Pool row i is
  image ``im{i+1}.jpg``, labels in the alphabetical concept order below.
* ``bihalf_lists``: Bi-half's ``<root>/img.txt`` (one file name per line) and ``<root>/targets.txt``
  (24 space-separated 0/1 per line), images under ``<root>/images``.
* ``list``: one list file ``<relative path> <24 x 0/1>`` (``list_file``).

Protocol ``deephash_mirflickr`` reads DeepHash-pytorch's 38-label ``train.txt`` / ``test.txt`` /
``database.txt`` instead.
"""

from __future__ import annotations

import os
from typing import ClassVar, Optional

import numpy as np

from .base import FileHashDataModule
from .pools import Pool
from .errors import DatasetFormatError, abspath, not_found
from .lists import LIST_ENCODING, check_images_exist, outside_root_error, read_list_file, under_root, warn_unlabeled
from .protocols import Protocol, register

CONCEPTS = ("animals", "baby", "bird", "car", "clouds", "dog", "female", "flower", "food", "indoor",
            "lake", "male", "night", "people", "plant_life", "portrait", "river", "sea", "sky",
            "structures", "sunset", "transport", "tree", "water")
ANNOTATION_DIR = "mirflickr25k_annotations_v080"
WHERE = ("http://press.liacs.nl/mirflickr/mirdownload.html: mirflickr25k.zip (images, extracts to "
         "mirflickr/) and mirflickr25k_annotations_v080.zip (extract into root); Bi-half's lists: "
         "https://github.com/liyunqianggyn/Deep-Unsupervised-Image-Hashing "
         "(ImageHashing/data/Flickr25k/img.txt, targets.txt); DeepHash-pytorch's 38-label lists: "
         "https://github.com/swuxyj/DeepHash-pytorch (data/mirflickr)")
SOURCES = ("auto", "annotations", "bihalf_lists", "list")


# ------------------------------------------------------------------------------------------ protocols
register(Protocol(
    "bihalf", "flickr25k", "pooled", 24, None,
    "Bi-half Flickr25k: all 25,000 MIRFlickr images, 24 concepts; 2,000 random queries; database = "
    "the other 23,000; train = 5,000 drawn from the database (seeded here; unseeded upstream).",
    "liyunqianggyn/Deep-Unsupervised-Image-Hashing@1cd671a:ImageHashing/data/flickr25k.py",
    query=2000, train=5000, database=None, per_class=False,
    nominal={"query": 2000, "train": 5000, "database": 23000}), aliases=("flickr25k",))
register(Protocol(
    "deephash_mirflickr", "flickr25k", "lists", 38, None,
    "DeepHash-pytorch `mirflickr`: 38 labels (all annotation files incl. *_r1); 1,000 query / "
    "4,000 train (not in the database) / 20,000 database lists.",
    "swuxyj/DeepHash-pytorch@ab14068:data/mirflickr/{train,test,database}.txt (made by its code.py)",
    lists={"train": ("train.txt",), "query": ("test.txt",), "database": ("database.txt",)},
    train_in_database=False,
    nominal={"query": 1000, "train": 4000, "database": 20000}), aliases=("mirflickr",))


class Flickr25k(FileHashDataModule):
    """Flickr25k / MIRFlickr-25k (24 labels, multi-label).

    Protocols: ``bihalf`` (default: 2,000 random queries, train 5,000 ⊂ database = the other 23,000,
    mAP@All) and ``deephash_mirflickr`` (38-label lists, 1,000 / 4,000 / 20,000, train not in the
    database, mAP@All).

    Args:
        root: dataset folder (see the module docstring for the three layouts).
        source: ``auto`` (``list`` if ``list_file`` is set, else ``annotations`` if the annotation
            folder exists, else ``bihalf_lists`` if ``img.txt`` exists), or one of ``annotations``,
            ``bihalf_lists``, ``list``.
        num_images: images ``im1.jpg`` ... ``im{num_images}.jpg`` form the pool (annotations source).
        list_file: list ``<relative path> <24 x 0/1>`` of the whole pool (``list`` source; relative
            to ``list_dir`` / ``root``).
        annotation_dir: folder of the concept files; None = ``<root>/mirflickr25k_annotations_v080``.
        image_dir: image folder; None = ``<root>/mirflickr`` (annotations, DeepHash lists),
            ``<root>/images`` (Bi-half lists) or ``root`` (list).
        drop_unlabeled: drop images with none of the 24 labels (Bi-half keeps all 25,000; they are
            relevant to no query, so keeping them lowers mAP, and a warning counts them).
        **kwargs: see :class:`~datamodules.base.FileHashDataModule` and
            :class:`~datamodules.base.HashDataModule`.
    """

    dataset_name: ClassVar[str] = "flickr25k"
    display_name: ClassVar[str] = "Flickr25k"
    default_protocol: ClassVar[str] = "bihalf"
    list_where_from: ClassVar[str] = WHERE

    def __init__(self, root: str = "data/flickr25k", source: str = "auto", num_images: int = 25000,
                 list_file: Optional[str] = None, annotation_dir: Optional[str] = None,
                 image_dir: Optional[str] = None, drop_unlabeled: bool = False, **kwargs):
        super().__init__(root=root, **kwargs)
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        if int(num_images) < 1:
            raise ValueError(f"num_images must be >= 1, got {num_images}")
        self.source = source
        self.num_images = int(num_images)
        self.list_file = list_file
        self.annotation_dir = annotation_dir
        self.image_dir = image_dir
        self.drop_unlabeled = bool(drop_unlabeled)

    def _split_variant(self) -> str:
        return "labeled" if self.drop_unlabeled else ""

    # ------------------------------------------------------------------ locations
    def _annotation_dir(self) -> str:
        return os.path.expanduser(self.annotation_dir) if self.annotation_dir else os.path.join(self.root, ANNOTATION_DIR)

    def _image_root(self) -> str:
        if self.image_dir:
            return os.path.expanduser(self.image_dir)
        mir = os.path.join(self.root, "mirflickr")
        return mir if os.path.isdir(mir) else self.root

    def _resolve_source(self) -> str:
        if self.source != "auto":
            return self.source
        if self.list_file:
            return "list"
        if os.path.isdir(self._annotation_dir()):
            return "annotations"
        if os.path.isfile(os.path.join(self.root, "img.txt")):
            return "bihalf_lists"
        raise not_found(
            "Flickr25k", [self._annotation_dir(), os.path.join(self.root, "mirflickr"),
                          os.path.join(self.root, "img.txt"), os.path.join(self.root, "targets.txt")],
            "one of three layouts under root: (1) mirflickr/im1.jpg ... im25000.jpg plus "
            f"{ANNOTATION_DIR}/<concept>.txt for the 24 concepts ({', '.join(CONCEPTS)}), each "
            "holding 1-based image numbers, one per line; (2) Bi-half's img.txt (file names) + "
            "targets.txt (24 space-separated 0/1 per line) with the images in images/; (3) a list "
            "file '<relative path> <24 x 0/1>' given as list_file",
            WHERE)

    # ------------------------------------------------------------------ pool readers
    def _pool_from_annotations(self) -> Pool:
        ann = self._annotation_dir()
        n = self.num_images
        labels = np.zeros((n, len(CONCEPTS)), dtype=np.uint8)
        missing = [c + ".txt" for c in CONCEPTS if not os.path.isfile(os.path.join(ann, c + ".txt"))]
        if missing:
            raise not_found("Flickr25k annotation files", ann,
                            f"{ANNOTATION_DIR}/<concept>.txt for the 24 concepts, each a text file "
                            f"with one 1-based image number per line (e.g. '123' for im123.jpg)",
                            WHERE, missing=missing)
        for j, c in enumerate(CONCEPTS):
            path = os.path.join(ann, c + ".txt")
            with open(path, "r", encoding=LIST_ENCODING) as fh:
                for lineno, line in enumerate(fh, 1):
                    s = line.strip()
                    if not s:
                        continue
                    if not s.isdigit():
                        raise DatasetFormatError(f"{abspath(path)}:{lineno}: expected a 1-based image "
                                                 f"number, found {s[:80]!r}")
                    k = int(s)
                    if not 1 <= k <= n:
                        raise DatasetFormatError(f"{abspath(path)}:{lineno}: image number {k} is outside "
                                                 f"1..{n} (num_images={n})")
                    labels[k - 1, j] = 1
        img_root = abspath(self._image_root())
        paths = [os.path.join(img_root, f"im{i}.jpg") for i in range(1, n + 1)]
        origins = [f"image number {i} (im{i}.jpg)" for i in range(1, n + 1)]
        return Pool(paths, labels, class_names=list(CONCEPTS), origins=origins,
                    order=f"im1.jpg ... im{n}.jpg; labels from {ANNOTATION_DIR} in the order {','.join(CONCEPTS)}")

    def _pool_from_bihalf_lists(self) -> Pool:
        img_txt, tgt_txt = os.path.join(self.root, "img.txt"), os.path.join(self.root, "targets.txt")
        for p, what in ((img_txt, "one image file name per line, e.g. 'im1.jpg'"),
                        (tgt_txt, "one line of 24 space-separated 0/1 labels per image of img.txt")):
            if not os.path.isfile(p):
                raise not_found(f"Flickr25k Bi-half list {os.path.basename(p)}", p, what, WHERE)
        with open(img_txt, encoding=LIST_ENCODING) as fh:
            names = [(i, s.strip()) for i, s in enumerate(fh, 1) if s.strip()]
        rows = []
        with open(tgt_txt, encoding=LIST_ENCODING) as fh:
            for lineno, line in enumerate(fh, 1):
                s = line.split()
                if not s:
                    continue
                if len(s) != len(CONCEPTS) or any(t not in ("0", "1") for t in s):
                    raise DatasetFormatError(f"{abspath(tgt_txt)}:{lineno}: expected {len(CONCEPTS)} "
                                             f"space-separated 0/1 labels, found {line.strip()[:120]!r}")
                rows.append([int(t) for t in s])
        if len(rows) != len(names):
            raise DatasetFormatError(f"{abspath(img_txt)} has {len(names)} entries but {abspath(tgt_txt)} "
                                     f"has {len(rows)} label lines; they must correspond line by line")
        img_root = abspath(self.image_dir if self.image_dir else os.path.join(self.root, "images"))
        paths = [os.path.normpath(os.path.join(img_root, n)) for _, n in names]
        outside = [(f"{abspath(img_txt)}:{i}", n, p) for (i, n), p in zip(names, paths) if not under_root(p, img_root)]
        if outside and not self.allow_outside_root:
            raise outside_root_error(*outside[0], img_root, more=len(outside) - 1)
        origins = [f"{abspath(img_txt)}:{i}" for i, _ in names]
        return Pool(paths, np.asarray(rows, dtype=np.uint8), class_names=None, origins=origins,
                    order=f"lines of {os.path.basename(img_txt)} / {os.path.basename(tgt_txt)}")

    def _pool_from_list(self) -> Pool:
        if not self.list_file:
            raise ValueError("source='list' needs list_file")
        path = self.list_file if os.path.isabs(self.list_file) else os.path.join(self._list_dir(), self.list_file)
        img_root = os.path.expanduser(self.image_dir) if self.image_dir else self.root
        if not os.path.isfile(path):
            from .lists import list_format

            raise not_found("Flickr25k list file", path, list_format(len(CONCEPTS), img_root), WHERE)
        ent = read_list_file(path, len(CONCEPTS), img_root, self.strip_prefix,
                             warn_if_unlabeled=not self.drop_unlabeled, allow_outside_root=self.allow_outside_root)
        return Pool(ent.paths, ent.labels, class_names=None, origins=ent.origins,
                    order=f"lines of {os.path.basename(path)}")

    def _load_pool(self) -> Pool:
        source = self._resolve_source()
        pool = {"annotations": self._pool_from_annotations, "bihalf_lists": self._pool_from_bihalf_lists,
                "list": self._pool_from_list}[source]()
        if source != "list" and not self.drop_unlabeled:  # read_list_file warns for a list itself
            where = (self._annotation_dir() if source == "annotations"
                     else os.path.join(self.root, "targets.txt"))
            warn_unlabeled(abspath(where), pool.labels)
        if self.drop_unlabeled:
            keep = np.flatnonzero(np.asarray(pool.labels).sum(1) > 0)
            pool = Pool([pool.images[i] for i in keep], np.asarray(pool.labels)[keep],
                        class_names=pool.class_names, origins=[pool.origins[i] for i in keep],
                        order=pool.order + "; images without labels dropped")
        check_images_exist(pool.images, pool.origins, self.check_images,
                           os.path.dirname(pool.images[0]) if pool.images else self.root,
                           f"Flickr25k ({source})",
                           report_path=os.path.join(self.split_dir, "missing_images_flickr25k.txt"),
                           hint=f"Where to get the images: {WHERE}")
        return pool
