"""The table of console commands: each name with what it does and an example (read by the dispatcher and LightningCLI).

Kept apart from ``cli.py`` so ``lightning_cli.py`` can read the names without importing the dispatcher that imports it.
"""

COMMANDS = {
    "fit": ("train a method on a dataset (resumable: --ckpt_path last)",
            "hashbench fit --config experiments/cifar_cib.yaml --model.bits 32"),
    "validate": ("evaluate a checkpoint on the validation split",
                 "hashbench validate --config experiments/cifar_cib.yaml --ckpt_path best"),
    "test": ("evaluate a checkpoint on the test queries against the database",
             "hashbench test --config experiments/cifar_cib.yaml --ckpt_path last"),
    "predict": ("run the model's predict loop (codes of the test queries and database)",
                "hashbench predict --config experiments/cifar_cib.yaml --ckpt_path last"),
    "compare": ("methods × code lengths × seeds, with LSH/ITQ baselines, into one results folder",
                "hashbench compare --config experiments/data/cifar.yaml --methods cib,bihalf --bits 16,32,64 --seeds 3"),
    "encode": ("write bit-packed codes of a split, a list file or an image folder",
               "hashbench encode --config experiments/cifar_cib.yaml --ckpt_path last --split database --out codes/database"),
    "evaluate": ("re-score saved codes with the suite's exact metrics",
                 "hashbench evaluate --codes codes/"),
    "reproduce": ("run the configs of a paper's ledger rows (experiments/reported/) and print paper vs ours",
                  "hashbench reproduce bihalf:table1 --seeds 3"),
    "search": ("exact Hamming top-k of query images against saved codes",
               "hashbench search --index codes/database --query photo.jpg -k 10"),
}
LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
