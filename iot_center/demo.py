"""`make demo`: the whole system on one machine, through the same code paths a real fleet uses.

1. a local InfluxDB 2 (data kept in .demo/influxdb between runs),
2. `iot-center setup`, then the IoT Center server under gunicorn,
3. a virtual Raspberry Pi: `iot-provision` against a temporary root instead of /etc (boot
   config with the enrollment token -> registration -> agent.ini + credential),
4. a week of its history (`iot-center simulate`, through its own token), so charts have shape,
5. the agent (`iot-agent run`) on the virtual sensor,

then prints where to look. Ctrl-C (or SIGTERM) stops everything in reverse order.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from iot_center.local_influxdb import REPO_ROOT, LocalInfluxDB, free_port

DEMO_DEVICE = "demo-pi"


def say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


class Demo:
    def __init__(self, workdir: Path, port: int, history: str, interval: int) -> None:
        self.dir = workdir
        self.port = port
        self.history = history
        self.interval = interval
        self.influx: LocalInfluxDB | None = None
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.bin = Path(sys.executable).parent

    # --- steps ------------------------------------------------------------------------------

    def start_influxdb(self) -> LocalInfluxDB:
        creds_path = self.dir / "influxdb.json"
        data = self.dir / "influxdb"
        if creds_path.exists() and data.exists():
            creds = json.loads(creds_path.read_text())
            influx = LocalInfluxDB(
                binary=os.environ.get("INFLUXD") or _find_influxd(),
                data_dir=data,
                port=creds["port"] if _port_free(creds["port"]) else free_port(),
                password=creds["password"],
                token=creds["token"],
            )
            say(f"starting InfluxDB (existing data in {data})")
            influx.launch()
            influx.onboard()  # already onboarded: only looks up the org
        else:
            shutil.rmtree(data, ignore_errors=True)
            say("starting a new InfluxDB and onboarding it")
            influx = LocalInfluxDB.start(
                data_dir=data, port=free_port(), binary=os.environ.get("INFLUXD") or None
            )
        creds_path.write_text(
            json.dumps({"port": influx.port, "password": influx.password, "token": influx.token})
        )
        creds_path.chmod(0o600)
        self.influx = influx
        return influx

    def write_server_config(self, influx: LocalInfluxDB) -> Path:
        secrets_path = self.dir / "secrets.json"
        if secrets_path.exists():
            kept = json.loads(secrets_path.read_text())
        else:
            kept = {
                "SECRET_KEY": secrets.token_urlsafe(32),
                "ENROLLMENT_TOKEN": secrets.token_urlsafe(24),
            }
            secrets_path.write_text(json.dumps(kept))
            secrets_path.chmod(0o600)
        self.enrollment_token = kept["ENROLLMENT_TOKEN"]
        cfg = self.dir / "config.ini"
        cfg.write_text(
            "[APP]\n"
            f"INFLUX_URL = {influx.url}\n"
            f"INFLUX_TOKEN = {influx.token}\n"
            f"INFLUX_ORG = {influx.org}\n"
            "INFLUX_BUCKET = iot_center\n"
            "INFLUX_BUCKET_AUTH = iot_center_devices\n"
            f"ENROLLMENT_TOKEN = {kept['ENROLLMENT_TOKEN']}\n"
            f"SECRET_KEY = {kept['SECRET_KEY']}\n"
            f"MEASUREMENT_INTERVAL = {self.interval}\n"
            "CONFIGURATION_REFRESH = 60\n"
        )
        cfg.chmod(0o600)
        return cfg

    def run_setup(self, cfg: Path) -> None:
        say("iot-center setup")
        subprocess.run([str(self.bin / "iot-center"), "--config", str(cfg), "setup"], check=True)

    def start_server(self, cfg: Path) -> str:
        url = f"http://127.0.0.1:{self.port}"
        say(f"starting IoT Center under gunicorn on {url}")
        log = open(self.dir / "iot-center.log", "ab")  # noqa: SIM115
        env = {**os.environ, "IOT_CENTER_CONFIG": str(cfg)}
        proc = subprocess.Popen(
            [
                str(self.bin / "gunicorn"),
                "--workers",
                "2",
                "--threads",
                "4",
                "--no-control-socket",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--access-logfile",
                "-",
                "iot_center:create_app()",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.dir,
        )
        log.close()
        self.procs.append(("iot-center", proc))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"IoT Center exited; see {self.dir / 'iot-center.log'}")
            try:
                if requests.get(f"{url}/health", timeout=2).status_code == 200:
                    return url
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise SystemExit(f"IoT Center did not answer; see {self.dir / 'iot-center.log'}")

    def backfill_history(self, cfg: Path, device_id: str) -> None:
        """Give the device a past (same generator as its virtual sensor, so curves join up)."""
        if not self.history:
            return
        say(f"writing {self.history} of history for {device_id} (iot-center simulate)")
        cmd = [str(self.bin / "iot-center"), "--config", str(cfg), "simulate", device_id]
        subprocess.run([*cmd, "--backfill", self.history, "--interval", "1m"], check=True)

    def provision_device(self, center_url: str) -> Path:
        root = self.dir / "pi-root"
        agent_ini = root / "etc" / "iot-agent" / "agent.ini"
        boot = root / "boot" / "firmware" / "iot-center.ini"
        if agent_ini.exists():
            say(f"virtual Pi already provisioned ({agent_ini})")
            return agent_ini
        say("provisioning a virtual Raspberry Pi (iot-provision with a temporary root)")
        boot.parent.mkdir(parents=True, exist_ok=True)
        boot.write_text(
            "[iot-center]\n"
            f"url = {center_url}\n"
            f"enrollment_token = {self.enrollment_token}\n"
            f"device_id = {DEMO_DEVICE}\n"
            "[agent]\nsensor = virtual\nclock_check = floor\n"
        )
        subprocess.run(
            [
                str(self.bin / "iot-provision"),
                "--root",
                str(root),
                "--no-start",
                "--clock",
                "none",
                "--timeout",
                "120",
            ],
            check=True,
        )
        return agent_ini

    def start_agent(self, agent_ini: Path) -> None:
        say(f"starting the agent for {DEMO_DEVICE} on the virtual sensor")
        log = open(self.dir / "agent.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            [str(self.bin / "iot-agent"), "--config", str(agent_ini), "run"],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
        )
        log.close()
        self.procs.append(("iot-agent", proc))

    def stop(self) -> None:
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                say(f"stopping {name}")
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(40)
                except subprocess.TimeoutExpired:
                    proc.kill()
        self.procs.clear()
        if self.influx:
            say("stopping InfluxDB")
            self.influx.stop(remove_data=False)
            self.influx = None

    def run(self) -> int:
        self.dir.mkdir(parents=True, exist_ok=True)
        influx = self.start_influxdb()
        cfg = self.write_server_config(influx)
        self.run_setup(cfg)
        url = self.start_server(cfg)
        agent_ini = self.provision_device(url)
        self.backfill_history(cfg, DEMO_DEVICE)
        self.start_agent(agent_ini)
        print(
            f"""
==========================================================================
 IoT Center demo is running
   Dashboard : {url}/            (sign in: user {influx.user}, password {influx.password})
   Devices   : {url}/devices      (the virtual Pi is {DEMO_DEVICE})
   Its charts: {url}/devices/{DEMO_DEVICE}
   Device API: {url}/api/env/{DEMO_DEVICE}   (Authorization: Token <device token>)
   InfluxDB  : {influx.url}   (org {influx.org}; API only, this build has no UI)
   Logs      : {self.dir}/iot-center.log, {self.dir}/agent.log
 Ctrl-C stops everything (data is kept in {self.dir}; `make clean` removes it).
==========================================================================""",
            flush=True,
        )
        stopping = False

        def _term(*_: object) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, _term)
        try:
            while True:
                for name, proc in self.procs:
                    if proc.poll() is not None:
                        say(f"{name} exited with {proc.returncode}; see its log in {self.dir}")
                        stopping = True
                if stopping:
                    return 1
                time.sleep(1)
        except KeyboardInterrupt:
            print(flush=True)
            return 0
        finally:
            self.stop()


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _find_influxd() -> str:
    from iot_center.local_influxdb import find_influxd

    return find_influxd()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run InfluxDB, IoT Center and a virtual Pi together.")
    p.add_argument("--dir", type=Path, default=REPO_ROOT / ".demo", help="state (default .demo/)")
    p.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("IOT_DEMO_PORT", "5000")),
        help="IoT Center port (default 5000, or $IOT_DEMO_PORT)",
    )
    p.add_argument("--history", default="7d", help="history to backfill ('' for none; default 7d)")
    p.add_argument("--interval", type=int, default=5, help="seconds between readings (default 5)")
    args = p.parse_args(argv)
    demo = Demo(args.dir.resolve(), args.port, args.history, args.interval)
    try:
        return demo.run()
    except subprocess.CalledProcessError as e:
        say(f"a step failed: {' '.join(map(str, e.cmd))} exited with {e.returncode}")
        return 1
    except (RuntimeError, TimeoutError, OSError) as e:
        say(f"failed: {e}")
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        demo.stop()  # whatever happened, leave no process behind


if __name__ == "__main__":
    sys.exit(main())
