"""The one place our code touches private (``_``-named) attributes of Lightning and argparse: no public hook exists.

Each access is pinned by a test in tests/test_framework_internals.py, named after it, so a Lightning or jsonargparse
upgrade that changes one fails that test by name (``make test-latest-lightning`` runs them against the newest release).
Everything else in hashbench/, callbacks/, lightning_modules/ and datamodules/ uses public APIs only
(tests/test_framework_internals.py::test_no_private_framework_access_outside_the_adapter).
"""
from __future__ import annotations

TRAINER_PREFIX = "--trainer."


class SubcommandHooks:
    """Mixin for a ``LightningCLI`` subclass: turns two private LightningCLI steps into public-named hooks.

    - ``after_subcommand_parser(parser, subcommand)``: LightningCLI has no hook after it builds a subcommand's parser
      (where we set defaults and reorder ``--help``); it is built in ``_prepare_subcommand_parser``.
    - ``before_checkpoint_path()``: the run directory must be known and ``--ckpt_path last`` resolved before
      LightningCLI reads the checkpoint's hyper-parameters, which it does in ``_parse_ckpt_path`` (before
      ``before_instantiate_classes``).
    """

    def after_subcommand_parser(self, parser, subcommand: str) -> None:
        """Called with each subcommand's freshly built parser."""

    def before_checkpoint_path(self) -> None:
        """Called after parsing, before LightningCLI reads ``ckpt_path``'s hyper-parameters."""

    def _prepare_subcommand_parser(self, klass, subcommand: str, **kwargs):
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        self.after_subcommand_parser(parser, subcommand)
        return parser

    def _parse_ckpt_path(self) -> None:
        self.before_checkpoint_path()
        super()._parse_ckpt_path()


def lead_with_checkpoint(parser, ckpt_help: str) -> None:
    """Give ``--ckpt_path`` ``ckpt_help`` and show its group before the Trainer's options.

    LightningCLI adds ``--ckpt_path`` after every Trainer option and documents it with Lightning's text, where
    ``last``/``best`` mean this run folder's checkpoints here; neither jsonargparse nor argparse has a public way to
    move an option group or replace an argument's help, hence argparse's ``_actions``/``_action_groups``.
    """
    actions = getattr(parser, "_actions", [])
    groups = getattr(parser, "_action_groups", None)
    ckpt = next((a for a in actions if "--ckpt_path" in a.option_strings), None)
    if ckpt is None or groups is None:
        return  # a version without these: the help keeps Lightning's order, nothing breaks
    ckpt.help = ckpt_help

    def holds(group, test) -> bool:
        return any(test(a) for a in getattr(group, "_group_actions", []))

    ckpt_group = next((g for g in groups if holds(g, lambda a: a is ckpt)), None)
    trainer_group = next((g for g in groups if holds(
        g, lambda a: any(o.startswith(TRAINER_PREFIX) for o in a.option_strings))), None)
    if ckpt_group is None or trainer_group is None or ckpt_group is trainer_group:
        return
    groups.remove(ckpt_group)
    groups.insert(groups.index(trainer_group), ckpt_group)
