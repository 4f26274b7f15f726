"""The champion and challenger section: a challenger model's shadow predictions stored beside the
champion's, compared over the chosen day (or the 7 days to it) by challenger_comparison; the
figures on screen are checked against counts made by hand."""

import datetime as dt

UTC = dt.UTC
DAY = dt.date(2026, 3, 9)
CHALLENGER = "xgb-2026-03-challenger"


def at_utc(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def scored(
    fraud_db, trans_num: str, when: dt.datetime, champion: bool, challenger: bool | None, label: bool | None
) -> None:
    """A payment the champion predicted (probability against its 0.5 threshold) and, unless
    challenger is None, the challenger too."""
    fraud_db.payment(trans_num, when, probability=0.9 if champion else 0.1, label=label)
    if challenger is not None:
        fraud_db.execute(
            """UPDATE payments_scored SET challenger_model_version = %s, challenger_probability = %s,
                   challenger_predicted_fraud = %s WHERE trans_num = %s""",
            (CHALLENGER, 0.8 if challenger else 0.2, challenger, trans_num),
        )


def confirmed(fraud_db, trans_num: str) -> None:
    """An alert sent for the payment and an analyst's verdict confirming it as fraud."""
    fraud_db.alert(trans_num)
    fraud_db.execute(
        """INSERT INTO alert_verdicts (trans_num, verdict, token_sha256, token_expires_at)
           VALUES (%s, 'fraud', sha256(convert_to(%s, 'UTF8')), now() + interval '7 days')""",
        (trans_num, trans_num),
    )


OUTCOMES = {  # (champion predicts fraud, challenger predicts fraud, label): payments of DAY
    (True, True, True): 2,
    (True, False, True): 1,
    (True, False, False): 3,
    (False, True, True): 2,
    (False, True, False): 1,
    (False, False, False): 4,
    (True, True, None): 1,
    (False, False, None): 1,
}


def test_champion_and_challenger_figures_equal_hand_counts(fraud_db, dashboard):
    minute = 0
    for (champion, challenger, label), count in OUTCOMES.items():
        for _ in range(count):
            scored(fraud_db, f"t-{minute}", at_utc(DAY, 10, minute), champion, challenger, label)
            minute += 1
    scored(
        fraud_db, "t-no-challenger", at_utc(DAY, 12), True, None, True
    )  # before the challenger: not compared
    scored(fraud_db, "t-earlier", at_utc(DAY - dt.timedelta(days=3), 12), True, True, True)
    confirmed(fraud_db, "t-0")  # (True, True, True): the challenger caught it too
    confirmed(fraud_db, "t-2")  # (True, False, True): it did not

    at = dashboard(day=DAY)

    shown = metrics(at)
    # 15 payments compared. Champion alerts 2+1+3+1 = 7, challenger 2+2+1+1 = 6, both 2+1 = 3;
    # agreeing: 2+1 alerting and 4+1 not = 8 of 15.
    # Champion against labels: TP 2+1 = 3, FP 3, FN 2 -> precision 3/6, recall 3/5.
    # Challenger: TP 2+2 = 4, FP 1, FN 1 -> precision 4/5, recall 4/5.
    assert {
        k: shown[k]
        for k in [
            "Champion alerts a day",
            "Challenger alerts a day",
            "Champion precision",
            "Challenger precision",
            "Champion recall",
            "Challenger recall",
            "Agreement",
            "Alerts by both",
            "Only the champion",
            "Only the challenger",
            "Confirmed frauds caught",
        ]
    } == {
        "Champion alerts a day": "7",
        "Challenger alerts a day": "6",
        "Champion precision": "50.0%",
        "Challenger precision": "80.0%",
        "Champion recall": "60.0%",
        "Challenger recall": "80.0%",
        "Agreement": "53.3%",
        "Alerts by both": "3",
        "Only the champion": "4",
        "Only the challenger": "3",
        "Confirmed frauds caught": "1 of 2",
    }
    assert any(
        f"Challenger `{CHALLENGER}`** against the champion `test-model`: 15 payments over 1 day, "
        "13 of them labelled" in m.value
        for m in at.markdown
    )

    at.radio(key="challenger_period").set_value("The 7 days to this day").run()

    shown = metrics(at)
    # One more payment 3 days earlier, alerted by both and labelled fraud: 8 and 7 alerts over 7 days.
    assert shown["Champion alerts a day"] == "1.1" and shown["Challenger alerts a day"] == "1"
    assert shown["Champion precision"] == "57.1%" and shown["Challenger recall"] == "83.3%"  # 4/7, 5/6
    assert shown["Agreement"] == "56.2%"  # 9 of 16


def test_precision_and_recall_undefined_without_labels(fraud_db, dashboard):
    scored(fraud_db, "t-1", at_utc(DAY, 9), True, False, None)
    scored(fraud_db, "t-2", at_utc(DAY, 10), False, False, None)

    shown = metrics(dashboard(day=DAY))

    assert [
        shown[k]
        for k in ("Champion precision", "Challenger precision", "Champion recall", "Challenger recall")
    ] == ["—"] * 4
    assert shown["Agreement"] == "50.0%" and shown["Only the champion"] == "1"
    assert shown["Confirmed frauds caught"] == "—"


def test_without_a_challenger_it_says_how_to_configure_one(fraud_db, dashboard):
    scored(fraud_db, "t-1", at_utc(DAY, 9), True, None, True)

    at = dashboard(day=DAY)

    assert not [m for m in at.metric if m.label.startswith("Challenger")]
    lines = [i.value for i in at.info if "challenger" in i.value]
    assert len(lines) == 1 and "No challenger model scored payments in this period" in lines[0]
    assert "`fraudctl_challenger_model_dir`" in lines[0] and 'docs/rules.md, "A challenger model"' in lines[0]
