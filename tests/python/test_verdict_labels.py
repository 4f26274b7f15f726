"""model/train.py --verdicts: the analysts' latest verdicts replace the data set's is_fraud for the
payments they cover, and nothing else."""

import json
import subprocess
import sys

import pandas as pd
import pytest
from conftest import REPO

from model import train


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_verdicts_override_the_labels_they_cover(sample, tmp_path):
    a, b = sample.loc[sample["is_fraud"] == 1, "trans_num"].iloc[:2]
    c, d = sample.loc[sample["is_fraud"] == 0, "trans_num"].iloc[:2]
    verdicts = train.read_verdicts(
        write(
            tmp_path / "v.csv",
            f"trans_num,verdict\n{a},not_fraud\n{b},fraud\n{c},fraud\n{d},not_fraud\nnot-in-data,fraud\n",
        )
    )

    relabelled, counts = train.apply_verdicts(sample, verdicts)

    assert counts == {"verdicts": 5, "covered": 4, "changed": 2}
    labels = dict(zip(relabelled["trans_num"], relabelled["is_fraud"]))
    assert [labels[t] for t in (a, b, c, d)] == [0, 1, 1, 0]
    others = ~sample["trans_num"].isin([a, b, c, d])
    assert relabelled.loc[others, "is_fraud"].equals(sample.loc[others, "is_fraud"])
    assert relabelled["is_fraud"].dtype == sample["is_fraud"].dtype
    assert sample.loc[sample["trans_num"] == a, "is_fraud"].item() == 1, "the input is left as it was"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("trans_num\nt1\n", "lacks the column(s) verdict"),
        ("trans_num,verdict\nt1,maybe\n", "verdicts other than fraud / not_fraud"),
        ("trans_num,verdict\nt1,fraud\nt1,not_fraud\n", "several rows for ['t1']"),
    ],
)
def test_a_verdicts_file_it_cannot_use_is_refused(tmp_path, text, problem):
    with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        train.read_verdicts(write(tmp_path / "v.csv", text))


def test_train_with_verdicts_records_them_in_the_metrics(sample, tmp_path):
    """The command end to end on a part of the sample: a verdict that flips a fraud is used."""
    part = pd.concat([sample[sample["is_fraud"] == 1], sample[sample["is_fraud"] == 0].iloc[:1500]])
    csv = tmp_path / "part.csv"
    part.to_csv(csv)
    fraud = part.loc[part["is_fraud"] == 1, "trans_num"].iloc[0]
    verdicts = write(tmp_path / "verdicts.csv", f"trans_num,verdict\n{fraud},not_fraud\n")
    out = tmp_path / "model"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "model.train",
            "--csv",
            str(csv),
            "--verdicts",
            str(verdicts),
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    recorded = json.loads((out / "metrics.json").read_text())["verdict_labels"]
    assert (recorded["covered"], recorded["changed"], recorded["file"]) == (1, 1, "verdicts.csv")
    counts = json.loads((out / "metrics.json").read_text())["counts"]
    assert sum(side["frauds"] for side in counts.values()) == int(part["is_fraud"].sum()) - 1
