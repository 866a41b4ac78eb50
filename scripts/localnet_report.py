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
    last_reports, all_reports = [], []
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
        all_reports += reports
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
        "weights_by_epoch": _weights_by_epoch(all_reports),
        "validators": validators,
        "validators_agree": agree,
        "common_epochs": sorted(common_epochs),
        "cycles": subnet.args.cycles,
        "weight_share_by_behaviour": _share_by(rows),
    }


def _weights_by_epoch(reports: list[dict]) -> dict[str, dict[str, float]]:
    """epoch -> miner uid -> weight, the mean over the validators that scored the epoch."""
    seen: dict[int, dict[int, list[float]]] = {}
    for report in reports:
        for m in report["miners"]:
            seen.setdefault(report["epoch"], {}).setdefault(m["uid"], []).append(m["weight"])
    return {
        str(epoch): {str(uid): round(sum(w) / len(w), 6) for uid, w in sorted(by_uid.items())}
        for epoch, by_uid in sorted(seen.items())
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


# Behaviours in a fixed order and colour: honest first, then the simulator's gaming ones.
BEHAVIOUR_COLOURS = {"honest": "tab:green"}
OTHER_COLOURS = ("tab:red", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive")


def behaviour_colours(rows: list[dict]) -> dict[str, str]:
    kinds = sorted({r["behaviour"] for r in rows}, key=lambda k: (k != "honest", k))
    others = iter(OTHER_COLOURS * 4)
    return {k: BEHAVIOUR_COLOURS.get(k) or next(others) for k in kinds}


def plot(report: dict, path: Path) -> None:
    """Weight per miner over the cycles (left) and quality beside weight per miner (right).

    Lines and bars are coloured by behaviour with a legend; a miner held at
    zero weight is drawn on a visible baseline (the axis starts below zero).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    rows = report["miners"]
    colours = behaviour_colours(rows)
    by_epoch = report.get("weights_by_epoch", {})
    epochs = sorted(by_epoch, key=int)
    top = max(
        [r["weight"] for r in rows] + [w for e in by_epoch.values() for w in e.values()] + [1e-6]
    )
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(max(11, 6 + len(rows) * 0.35), 4.8), gridspec_kw={"width_ratios": [1, 1.4]}
    )
    # Each behaviour's points are shifted a little sideways, so that miners of
    # different behaviours held at the same weight (zero) do not hide each other.
    kinds = list(colours)
    for r in rows:
        series = [by_epoch[e].get(str(r["uid"]), 0.0) for e in epochs]
        k = kinds.index(r["behaviour"])
        dodge = (k - (len(kinds) - 1) / 2) * 0.1
        honest = r["behaviour"] == "honest"
        left.plot(
            [n + dodge for n in range(len(epochs))], series, marker="o" if honest else "s",
            markersize=4 if honest else 6, linewidth=1.2, color=colours[r["behaviour"]],
            alpha=0.8 if honest else 1.0, zorder=2 if honest else 3,
        )  # fmt: skip
    left.set_xticks(range(len(epochs)), epochs)
    left.set_ylim(-0.06 * top, top * 1.15)
    left.axhline(0, color="#999", linewidth=0.8, zorder=1)
    left.set_xlabel("epoch")
    left.set_ylabel("weight (mean over validators)")
    left.set_title("Weight per miner over the cycles")
    left.legend(
        handles=[Line2D([], [], color=c, marker="o", label=k) for k, c in colours.items()],
        title="behaviour",
        loc="upper center",
        bbox_to_anchor=(0.5, -0.16),
        ncol=min(4, len(colours)),
        fontsize=8,
    )
    x = list(range(len(rows)))
    quality = [r["quality"] or 0.0 for r in rows]
    edge = [colours[r["behaviour"]] for r in rows]
    right.bar([i - 0.2 for i in x], quality, width=0.4, color="white", edgecolor=edge, hatch="//")
    right.set_ylim(0, 1.1)
    right.set_ylabel("quality (hatched)")
    twin = right.twinx()
    twin.bar([i + 0.2 for i in x], [r["weight"] for r in rows], width=0.4, color=edge)
    for i, r in enumerate(rows):
        if r["weight"] <= 0:
            twin.text(i + 0.2, 0, "0", ha="center", va="bottom", fontsize=7, color=edge[i])
    twin.set_ylim(0, top * 1.15)
    twin.set_ylabel("weight (filled)")
    right.set_xticks(x, [f"{r['uid']} {r['behaviour'][:10]}" for r in rows], fontsize=7)
    right.tick_params(axis="x", labelrotation=90)
    right.set_xlabel("miner uid and behaviour")
    right.set_title("Quality beside weight, per miner")
    fig.suptitle(f"Local subnet: {len(rows)} miners, {len(epochs)} epochs scored")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
