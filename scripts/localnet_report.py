"""The local subnet's report: what each miner earned and what each validator saw.

Read from the work directory ``scripts/localnet.py`` ran in: every
validator's cycle reports (``validator-*/cycles/epoch-*.json``) and S3
evaluation rounds (``validator-*/s3/``), and the weights ledger in the local
chain file. ``print_table`` and ``plot`` show it; the JSON is ``--json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from localnet_dataset import dataset_report, describe

from common.chain import read_chain_file


def collect_report(subnet: Any) -> dict:
    """The report of a ``localnet.Subnet`` whose validators have run."""
    validators, plan_hashes = [], {}
    last_reports = []
    for validator in subnet.validators:
        folder = (
            subnet.workdir
            / f"validator-{validator['wallet']}-{validator['wallet_hotkey']}"
            / "cycles"
        )
        reports = [json.loads(p.read_text()) for p in sorted(folder.glob("epoch-*.json"))]
        hashes = {r["epoch"]: r["plan_hash"] for r in reports}
        plan_hashes[validator["hotkey"]] = hashes
        validators.append(
            {
                "hotkey": validator["hotkey"],
                "uid": validator["uid"],
                "plan_hash": {str(k): v for k, v in sorted(hashes.items())},
                "weights_set": sum(r["weights_set"] for r in reports),
                "cycles": len(reports),
                "tiebreak": {
                    k: sum(r.get("tiebreak", {}).get(k, 0) for r in reports)
                    for k in ("disputes", "resolved", "settled", "lookups", "answered")
                },
                # Miners by verdict of the manifest checks against S3, over the cycles.
                "s3_verification": {
                    status: sum(r.get("s3_verification", {}).get(status, 0) for r in reports)
                    for status in ("ok", "mismatch", "unavailable", "no_files")
                },
                "dataset": dataset_report(subnet, validator, reports),
                "s3_evaluation_rounds": sorted(
                    (json.loads(p.read_text()) for p in (folder.parent / "s3").glob("s3-*.json")),
                    key=lambda r: (r["epoch"], int(r["round"].rsplit("-r", 1)[-1])),
                ),
            }
        )
        if reports:
            last_reports.append(reports[-1])
    common_epochs = (
        set.intersection(*(set(h) for h in plan_hashes.values())) if plan_hashes else set()
    )
    agree = bool(common_epochs) and all(
        len({plan_hashes[v][e] for v in plan_hashes}) == 1 for e in common_epochs
    )
    ledger = read_chain_file(subnet.chain_file)["weights"]
    rows = []
    for miner in subnet.miners:
        weights = [float(entry["weights"].get(str(miner["uid"]), 0.0)) for entry in ledger.values()]
        seen = [
            next((m for m in r["miners"] if m["hotkey"] == miner["hotkey"]), None)
            for r in last_reports
        ]
        seen = [m for m in seen if m]
        quality = [m["quality"] for m in seen if m["quality"] is not None]
        rows.append(
            {
                "uid": miner["uid"],
                "hotkey": miner["hotkey"],
                "behaviour": miner["behaviour"],
                "answered": max((m["answered_zipcodes"] for m in seen), default=0),
                "assigned": max((m["assigned_zipcodes"] for m in seen), default=0),
                "quality": round(sum(quality) / len(quality), 4) if quality else None,
                "credibility": round(sum(m["credibility"] or 0 for m in seen) / len(seen), 4)
                if seen
                else None,
                "weight": round(sum(weights) / len(weights), 6) if weights else 0.0,
                "flags": sorted({f for m in seen for f in m["flags"]}),
            }
        )
    return {
        "miners": rows,
        "validators": validators,
        "validators_agree": agree,
        "common_epochs": sorted(common_epochs),
        "cycles": subnet.args.cycles,
        "weight_share_by_behaviour": _share_by(rows),
    }


def _share_by(rows: list[dict]) -> dict[str, float]:
    out: dict[str, float] = {}
    for row in rows:
        out[row["behaviour"]] = round(out.get(row["behaviour"], 0.0) + row["weight"], 6)
    return out


def print_table(report: dict) -> None:
    print(
        f"{'uid':>4} {'behaviour':<11}{'answered':>9}{'quality':>9}{'credib.':>9}"
        f"{'weight':>9}  flags"
    )
    for row in report["miners"]:
        quality = "-" if row["quality"] is None else f"{row['quality']:.3f}"
        cred = "-" if row["credibility"] is None else f"{row['credibility']:.3f}"
        answered = f"{row['answered']}/{row['assigned']}"
        print(
            f"{row['uid']:>4} {row['behaviour']:<11}{answered:>9}{quality:>9}{cred:>9}"
            f"{row['weight']:>9.4f}  {','.join(row['flags'])}"
        )
    for v in report["validators"]:
        tb, s3 = v["tiebreak"], v["s3_verification"]
        rounds = v["s3_evaluation_rounds"]
        print(
            f"validator uid {v['uid']}: tie-breaks {tb['resolved']}/{tb['disputes']} disputes "
            f"resolved ({tb['answered']}/{tb['lookups']} lookups answered); S3 manifest checks "
            f"{s3}; {len(rounds)} S3 evaluation rounds "
            f"({sum(r['judged'] for r in rounds)} miner evaluations)"
        )
        if v.get("dataset"):
            print(describe(v))
    print(
        f"validators agree on plans: {report['validators_agree']} "
        f"(epochs {report['common_epochs']}); "
        f"weight by behaviour: {report['weight_share_by_behaviour']}"
    )


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["miners"]
    colours = {"honest": "tab:green"}
    fig, ax = plt.subplots(figsize=(max(6, len(rows) * 0.5), 4))
    ax.bar(
        [str(r["uid"]) for r in rows],
        [r["weight"] for r in rows],
        color=[colours.get(r["behaviour"], "tab:red") for r in rows],
    )
    for i, r in enumerate(rows):
        ax.text(
            i, r["weight"], r["behaviour"][:4], ha="center", va="bottom", fontsize=7, rotation=90
        )
    ax.set_xlabel("miner uid")
    ax.set_ylabel("weight (mean over validators)")
    ax.set_title("Local subnet: weights per miner (green honest, red adversarial)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
