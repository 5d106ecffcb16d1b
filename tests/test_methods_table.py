"""experiments/methods_table.py: the README's methods table from a compare folder's runs.csv, run as the lead runs it."""
import subprocess
import sys

from tests.console_fixtures import REPO

HEADER = "method,display,bits,seed,status,supervised,baseline,mAP@all,total_seconds\n"


def test_table_has_one_row_per_method_and_one_column_per_code_length(tmp_path):
    (tmp_path / "runs.csv").write_text(HEADER + "adsh,ADSH,16,0,ok,True,False,0.61548,38.7\n"
                                       "adsh,ADSH,32,0,failed,True,False,,\n"
                                       "lsh,LSH,16,0,ok,False,True,0.2001,3.2\n"
                                       "lsh,LSH,32,0,ok,False,True,0.3,3.9\n"
                                       "bihalf,BiHalfNet,32,0,ok,False,False,0.35,40\n")
    out = subprocess.run([sys.executable, str(REPO / "experiments" / "methods_table.py"), str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "| method | kind | 16 bits | 32 bits |"
    assert lines[2:] == ["| BiHalfNet | unsupervised | – | 0.3500 (40 s) |",
                         "| ADSH | supervised | 0.6155 (39 s) | failed |",
                         "| LSH | closed form | 0.2001 (3 s) | 0.3000 (4 s) |"]


def test_missing_folder_says_what_to_run(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "experiments" / "methods_table.py"), str(tmp_path / "nope")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "runs.csv not found" in out.stderr and "hashbench compare" in out.stderr
