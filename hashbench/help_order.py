"""``lightning fit --help`` leads with what a researcher sets: the checkpoint option next to model and data.

LightningCLI adds the subcommand's own arguments (``--ckpt_path``) after every Trainer option and documents
``--ckpt_path`` with Lightning's text, where ``last``/``best`` mean this run folder's checkpoints here. Neither
jsonargparse nor LightningCLI has a public way to move an option group or to replace an argument's help, so this is
the one place that touches argparse's private ``_action_groups``/``_actions`` (pinned by
tests/test_console_help.py::test_fit_help_leads_with_model_data_run_name_and_ckpt_path).
"""
from __future__ import annotations

TRAINER_PREFIX = "--trainer."


def lead_with_checkpoint(parser, ckpt_help: str) -> None:
    """Give ``--ckpt_path`` ``ckpt_help`` and show its group before the Trainer's options."""
    actions = getattr(parser, "_actions", [])
    groups = getattr(parser, "_action_groups", None)
    ckpt = next((a for a in actions if "--ckpt_path" in a.option_strings), None)
    if ckpt is None or groups is None:
        return  # a Lightning version without these: the help keeps Lightning's order, nothing breaks
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
