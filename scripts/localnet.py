#!/usr/bin/env python3
"""A whole subnet on this machine: local chain file, N miners, M validators, real signed HTTP.

    python scripts/localnet.py --miners 20 --validators 2 --cycles 2 --cycle-seconds 20 \\
        --adversary fabricate=0.25 --workdir W --json out.json --plot out.png

Creates ``W/chain.json`` (the local chain: neurons and the weights ledger),
``W/wallets/`` (real bittensor wallets ``validator-0..``, ``miner-0..``, no
passwords) and ``W/localnet.json`` (who is where, for tools and people),
starts every neuron as its own process on 127.0.0.1 (logs in ``W/logs/``),
runs the validators for ``--cycles`` epochs of ``--cycle-seconds``, then
prints a table per miner and writes the JSON report and a PNG chart. Groups
default to a quarter of the miners (5 to 10), so each batch leaves fresh
miners for the tie-break lookups (``tiebreak`` in each validator's report).
Each validator's status page (``--status.port``) is printed at start;
``--serve`` keeps everything running afterwards until Ctrl-C, the status
pages at the same addresses. Ctrl-C or
SIGTERM at any point stops every child process.

``--adversary NAME=FRACTION`` takes the simulator's names and plugins
(``path/file.py:Class``). In a real process a miner has no peers' answers to
copy, so ``copycat`` behaves as offline here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))  # localnet_report, also when loaded by path

from localnet_dataset import validator_dataset  # noqa: E402
from localnet_report import collect_report, plot, print_table  # noqa: E402
from localnet_status import address as status_address  # noqa: E402
from localnet_status import serve_pages  # noqa: E402

from common.chain import NeuronInfo, create_chain_file, read_chain_file  # noqa: E402
from common.epochs import EpochClock  # noqa: E402
from config.consensus import AssignmentConfig  # noqa: E402
from sim.adversaries import load_behaviour  # noqa: E402
from sim.adversaries import parse_adversary as parse_adversary_spec  # noqa: E402
from sim.processes import free_port  # noqa: E402

VALIDATOR_STAKE = 1000.0
MINER_STAKE = 1.0
STARTUP_TIMEOUT_S = 60.0
STARTUP_S_PER_MINER = 2.0
S3_BUCKET = "subnet-data"
S3_KEY = "localnet"  # the S3 emulator takes any credentials
MIN_CYCLE_S = 30.0
# What the S3 emulator (moto, one Python process) takes beside every miner, validator
# and the Data API on a 2-core machine: ~90 presigned POSTs/s alone, far less when the
# cores are shared. Epochs sized for fewer left honest miners' last files past the deadline.
UPLOADS_PER_S = 20.0


def parse_adversary(text: str) -> tuple[str, float]:
    try:
        return parse_adversary_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run a whole subnet locally and report per-miner outcomes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--miners", type=int, default=20, help="miner processes")
    parser.add_argument("--validators", type=int, default=2, help="validator processes")
    parser.add_argument(
        "--cycles", type=int, default=2, help="consensus cycles each validator runs"
    )
    parser.add_argument(
        "--cycle-seconds",
        type=float,
        default=argparse.SUPPRESS,
        help="epoch length (default: long enough for the epoch's uploads to reach the local "
        f"S3 emulator by the deadline at {UPLOADS_PER_S:g} files/s, at least {MIN_CYCLE_S:g} s)",
    )
    parser.add_argument(
        "--collect-fraction",
        type=float,
        default=0.6,
        help="share of the epoch miners have (the block deadline); the rest is for upload "
        "checks, tie-breaks, consensus and S3 evaluation",
    )
    parser.add_argument("--zipcodes", type=int, default=60, help="zipcodes per epoch")
    parser.add_argument(
        "--miners-per-group",
        type=int,
        help="group size (default: a quarter of the miners, 5 to 10, so that a batch's two "
        "groups leave fresh miners for tie-breaks)",
    )
    parser.add_argument(
        "--adversary",
        type=parse_adversary,
        action="append",
        default=[],
        metavar="NAME=FRACTION",
        help="gaming behaviour and its share of miners (repeatable)",
    )
    parser.add_argument("--seed", type=int, default=7, help="synthetic world and behaviour seed")
    parser.add_argument("--scrape-delay", type=float, default=0.02, help="seconds per zipcode")
    parser.add_argument("--workdir", type=Path, default=Path("localnet"), help="work directory")
    parser.add_argument(
        "--json", type=Path, help="write the report here (default WORKDIR/report.json)"
    )
    parser.add_argument(
        "--plot", type=Path, help="write a PNG chart here (default WORKDIR/report.png)"
    )
    parser.add_argument("--serve", action="store_true", help="keep running after the cycles")
    parser.add_argument(
        "--no-data-api",
        action="store_true",
        help="no Data API: validators derive blocks locally (no honeypots, no nonces)",
    )
    args = parser.parse_args(argv)
    if args.miners < 2 or args.validators < 1 or args.cycles < 1:
        parser.error("need at least 2 miners, 1 validator and 1 cycle")
    if sum(f for _, f in args.adversary) > 1:
        parser.error("adversary fractions add up to more than 1")
    if args.miners_per_group is None:
        args.miners_per_group = max(5, min(10, args.miners // 4))
    if args.miners_per_group < 1:
        parser.error("--miners-per-group must be at least 1")
    if "cycle_seconds" not in args:
        args.cycle_seconds = default_cycle_seconds(args)
    args.json = args.json or args.workdir / "report.json"
    args.plot = args.plot or args.workdir / "report.png"
    return args


def uploads_per_epoch(args: argparse.Namespace) -> int:
    """One file per (miner, zipcode) assignment: each zipcode goes to the validator's
    default number of groups (two)."""
    groups = AssignmentConfig().overlap_factor
    return args.zipcodes * groups * min(args.miners_per_group, args.miners)


def default_cycle_seconds(args: argparse.Namespace) -> float:
    if args.no_data_api:
        return MIN_CYCLE_S
    upload_window = uploads_per_epoch(args) / UPLOADS_PER_S
    return float(max(MIN_CYCLE_S, math.ceil(upload_window / args.collect_fraction)))


def behaviours(n: int, adversaries: list[tuple[str, float]], seed: int) -> list[str]:
    slots = list(range(n))
    random.Random(f"localnet:{seed}").shuffle(slots)
    kinds = ["honest"] * n
    for name, fraction in adversaries:
        for _ in range(round(fraction * n)):
            if slots:
                kinds[slots.pop()] = name
    return kinds


def create_wallet(path: Path, name: str, hotkey: str) -> tuple[str, str]:
    import bittensor as bt

    wallet = bt.Wallet(name=name, hotkey=hotkey, path=str(path))
    coldkey_file = Path(path) / name / "coldkeypub.txt"
    if not coldkey_file.exists():
        wallet.create_new_coldkey(use_password=False, suppress=True, overwrite=True)
    wallet.create_new_hotkey(use_password=False, suppress=True, overwrite=True)
    return wallet.hotkey.ss58_address, wallet.coldkeypub.ss58_address


class Subnet:
    """The child processes of one local subnet; stops them all on exit."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = args.workdir.resolve()
        self.chain_file = self.workdir / "chain.json"
        self.processes: list[subprocess.Popen] = []
        self.miners: list[dict] = []
        self.validators: list[dict] = []
        self.owner: dict = {}
        self.data_api: dict | None = None  # url, hotkey once it serves
        self.s3_endpoint: str | None = None
        self.s3_bucket, self.s3_key = S3_BUCKET, S3_KEY

    def setup(self) -> None:
        self.clear_previous_run()
        wallets = self.workdir / "wallets"
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        neurons = []
        for i in range(self.args.validators):
            hotkey, coldkey = create_wallet(wallets, f"validator-{i}", "default")
            self.validators.append(
                {
                    "uid": i,
                    "hotkey": hotkey,
                    "coldkey": coldkey,
                    "wallet": f"validator-{i}",
                    "wallet_hotkey": "default",
                    "status_port": free_port(),
                }
            )
            neurons.append(NeuronInfo(i, hotkey, coldkey, VALIDATOR_STAKE, True, None))
        for i, kind in enumerate(behaviours(self.args.miners, self.args.adversary, self.args.seed)):
            uid = self.args.validators + i
            shared = getattr(load_behaviour(kind), "shares_coldkey", False)
            name, hot = (f"miner-{kind}", f"miner-{i}") if shared else (f"miner-{i}", "default")
            hotkey, coldkey = create_wallet(wallets, name, hot)
            self.miners.append(
                {
                    "uid": uid,
                    "hotkey": hotkey,
                    "coldkey": coldkey,
                    "wallet": name,
                    "wallet_hotkey": hot,
                    "behaviour": kind,
                }
            )
            neurons.append(NeuronInfo(uid, hotkey, coldkey, MINER_STAKE, False, None))
        create_chain_file(self.chain_file, 1, neurons)
        # The subnet owner's hotkey, for the Data API (not a neuron of the subnet).
        owner_hotkey, owner_coldkey = create_wallet(wallets, "owner", "default")
        self.owner = {"hotkey": owner_hotkey, "coldkey": owner_coldkey}

    def clear_previous_run(self) -> None:
        """Start from nothing: a run's stores would carry its epochs into this one's report.

        Only a directory a local subnet made (it holds ``localnet.json``) is
        cleared; its wallets are kept (same hotkeys, nothing to gain by new ones).
        """
        if not (self.workdir / "localnet.json").exists():
            return
        print(f"clearing the previous run in {self.workdir} (wallets kept)", flush=True)
        for child in self.workdir.iterdir():
            if child.name == "wallets":
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()

    def _chain_args(self, wallet: str, hotkey: str = "default") -> list[str]:
        """Preset, local chain and wallet: what every process of the subnet is started with."""
        return [
            "--preset",
            "local",
            "--subtensor.network",
            "localfile",
            "--chain.file",
            str(self.chain_file),
            "--wallet.path",
            str(self.workdir / "wallets"),
            "--wallet.name",
            wallet,
            "--wallet.hotkey",
            hotkey,
        ]

    def _common(self, wallet: str, hotkey: str) -> list[str]:
        return [
            *self._chain_args(wallet, hotkey),
            "--workdir",
            str(self.workdir),
            "--synthetic.seed",
            str(self.args.seed),
            "--env-file",
            "/dev/null",
            *(
                [
                    "--data_api.url",
                    self.data_api["url"],
                    "--data_api.hotkey",
                    self.data_api["hotkey"],
                ]
                if self.data_api
                else []
            ),
        ]

    def start_s3(self) -> None:
        """An S3 protocol server (moto) on a free loopback port, with the subnet's bucket."""
        import socket
        import urllib.error
        import urllib.request

        import boto3

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        binary = Path(sys.executable).with_name("moto_server")
        argv = [str(binary)] if binary.exists() else [sys.executable, "-m", "moto.server"]
        log = open(self.workdir / "logs" / "s3.log", "w")  # noqa: SIM115 - lives with the child
        self.processes.append(
            subprocess.Popen(
                [*argv, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
            )
        )
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                self._check_children()
                if time.monotonic() > deadline:
                    raise RuntimeError("the S3 server did not start") from None
                time.sleep(0.1)
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_KEY,
        ).create_bucket(Bucket=S3_BUCKET)
        self.s3_endpoint = endpoint

    def start_data_api(self) -> None:
        """The owner's Data API on a free loopback port, its SQLite in the work directory."""
        endpoint = self.workdir / "data_api" / "endpoint.json"
        endpoint.unlink(missing_ok=True)
        argv = [
            *self._chain_args("owner"),
            "--workdir",
            str(self.workdir),
            "--env-file",
            "/dev/null",
            "--api.port",
            "0",
            "--cycle.seconds",
            str(self.args.cycle_seconds),
            "--collect.fraction",
            str(self.args.collect_fraction),
            "--block.zipcodes",
            str(self.args.zipcodes),
            # The block carries the group size, and validators follow the block's.
            "--miners.per.group",
            str(self.args.miners_per_group),
            # No-residential honeypots (the synthetic market leaves real PO-box
            # zipcodes empty): one in twenty zipcodes.
            "--block.honeypots",
            str(max(1, self.args.zipcodes // 20)),
            "--metagraph.refresh",
            "2",
            *(
                [
                    "--s3.endpoint",
                    self.s3_endpoint,
                    "--s3.bucket",
                    S3_BUCKET,
                    "--s3.access.key.id",
                    S3_KEY,
                    "--s3.secret.access.key",
                    S3_KEY,
                ]
                if self.s3_endpoint
                else []
            ),
        ]
        process = self._spawn("data_api", argv, "data_api")
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if endpoint.exists():
                try:
                    found = json.loads(endpoint.read_text())
                except ValueError:  # being written
                    found = {}
                if found.get("pid") == process.pid:
                    self.data_api = {"url": found["url"], "hotkey": found["hotkey"]}
                    return
            self._check_children()
            time.sleep(0.2)
        raise RuntimeError(f"the Data API did not start within {STARTUP_TIMEOUT_S:.0f}s")

    def _spawn(
        self, module: str, argv: list[str], log_name: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen:
        log = open(self.workdir / "logs" / f"{log_name}.log", "w")  # noqa: SIM115 - lives with the child
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **(env or {})}
        process = subprocess.Popen(
            [sys.executable, "-m", module, *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
        )
        self.processes.append(process)
        return process

    def start_miners(self) -> None:
        for miner in self.miners:
            argv = [
                *self._common(miner["wallet"], miner["wallet_hotkey"]),
                "--port",
                "0",
                "--behaviour",
                miner["behaviour"],
                "--scrape.delay",
                str(self.args.scrape_delay),
                "--metagraph.refresh",
                "2",
                # The validators' epoch length: miners refuse work of another epoch.
                "--cycle.seconds",
                str(self.args.cycle_seconds),
                "--epoch.check",
            ]
            self._spawn("neurons.miner", argv, f"miner-{miner['uid']}")
        # Each process imports bittensor (about a second of CPU): allow for many miners.
        timeout = STARTUP_TIMEOUT_S + STARTUP_S_PER_MINER * len(self.miners)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            published = {
                n["hotkey"]: n["endpoint"] for n in read_chain_file(self.chain_file)["neurons"]
            }
            if all(published.get(m["hotkey"]) for m in self.miners):
                for m in self.miners:
                    m["endpoint"] = published[m["hotkey"]]
                return
            self._check_children()
            time.sleep(0.2)
        raise RuntimeError(
            f"miners did not publish endpoints within {timeout:.0f}s; see {self.workdir}/logs"
        )

    def start_validators(self) -> list[subprocess.Popen]:
        started = []
        for validator in self.validators:
            argv = [
                *self._common(validator["wallet"], validator["wallet_hotkey"]),
                "--cycle.seconds",
                str(self.args.cycle_seconds),
                "--collect.fraction",
                str(self.args.collect_fraction),
                "--max.cycles",
                str(self.args.cycles),
                "--zipcodes.per.cycle",
                str(self.args.zipcodes),
                "--miners.per.group",
                str(self.args.miners_per_group),
                "--metagraph.refresh",
                "2",
                "--status.port",
                str(validator["status_port"]),
            ]
            flags, env = validator_dataset(self, validator)  # every validator exports
            started.append(
                self._spawn("neurons.validator", argv + flags, f"validator-{validator['uid']}", env)
            )
        return started

    def _check_children(self) -> None:
        for process in self.processes:
            if process.poll() not in (None, 0):
                raise RuntimeError(
                    f"{' '.join(process.args[2:4])} exited with {process.returncode}; "
                    f"see {self.workdir}/logs"
                )

    def write_description(self) -> None:
        description = {
            "chain_file": str(self.chain_file),
            "miners": self.miners,
            "validators": self.validators,
            "data_api_url": self.data_api["url"] if self.data_api else None,
            "data_api_hotkey": self.data_api["hotkey"] if self.data_api else None,
            "s3_endpoint_url": self.s3_endpoint,
            "s3_bucket": S3_BUCKET if self.s3_endpoint else None,
        }
        (self.workdir / "localnet.json").write_text(json.dumps(description, indent=1))

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 10
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    subnet = Subnet(args)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    started = time.monotonic()
    try:
        subnet.setup()
        if not args.no_data_api:
            subnet.start_s3()
            subnet.start_data_api()
        subnet.start_miners()
        subnet.write_description()
        print(
            f"{len(subnet.miners)} miners up in {time.monotonic() - started:.1f}s; "
            f"starting validators for {args.cycles} epochs of {args.cycle_seconds:g}s"
            + ("" if args.no_data_api else f" (~{uploads_per_epoch(args)} uploads per epoch)")
        )
        validators = subnet.start_validators()
        for v in subnet.validators:
            print(
                f"validator {v['uid']} status page: {status_address(v['status_port'])}", flush=True
            )
        budget = args.cycle_seconds * (args.cycles + 2) + STARTUP_TIMEOUT_S
        for process in validators:
            process.wait(timeout=budget)
        failed = [p for p in validators if p.returncode != 0]
        if failed:
            print(
                f"localnet: {len(failed)} validator(s) failed; see {subnet.workdir}/logs",
                file=sys.stderr,
            )
            return 1
        report = collect_report(subnet)
        report["runtime_s"] = round(time.monotonic() - started, 1)
        print_table(report)
        args.json.write_text(json.dumps(report, indent=1))
        plot(report, args.plot)
        print(f"report: {args.json}  chart: {args.plot}  logs: {subnet.workdir}/logs")
        if args.serve:
            print(f"serving; see {subnet.workdir}/localnet.json. Ctrl-C to stop.", flush=True)
            clock = EpochClock(args.cycle_seconds, args.collect_fraction)
            asyncio.run(serve_pages(subnet.validators, subnet.workdir, clock))
        return 0
    except KeyboardInterrupt:
        print("localnet: interrupted; stopping everything", file=sys.stderr)
        return 130
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"localnet: {exc}", file=sys.stderr)
        return 1
    finally:
        subnet.stop()


if __name__ == "__main__":
    raise SystemExit(main())
