"""`iot-center setup`: make an InfluxDB ready for IoT Center. Safe to run any number of times.

On a fresh InfluxDB it onboards (org, admin user, the configured token as operator token);
then it creates whichever of the two buckets is missing: telemetry with a finite retention,
devices kept forever (they hold the device records and tokens).
"""

from __future__ import annotations

from collections.abc import Callable

from influxdb_client import BucketRetentionRules, InfluxDBClient
from influxdb_client.domain.onboarding_request import OnboardingRequest
from influxdb_client.service.setup_service import SetupService

from iot_center.influx import translate_errors
from iot_center.settings import Settings


def setup_influxdb(
    settings: Settings,
    username: str | None = None,
    password: str | None = None,
    say: Callable[[str], None] = print,
) -> list[str]:
    """Bring InfluxDB to the state the server needs; returns what was done."""
    done: list[str] = []
    retention = settings.TELEMETRY_RETENTION_DAYS * 86400
    with InfluxDBClient(
        url=settings.INFLUX_URL,
        token=settings.INFLUX_TOKEN,
        org=settings.INFLUX_ORG,
        timeout=20_000,
    ) as client:
        setup = SetupService(client.api_client)
        with translate_errors("check whether it is onboarded"):
            allowed = setup.get_setup().allowed
        if allowed:
            if not username or not password:
                raise SystemExit(
                    f"InfluxDB at {settings.INFLUX_URL} is not set up yet: give --username "
                    "and --password for its first admin user"
                )
            with translate_errors("onboard"):
                setup.post_setup(
                    onboarding_request=OnboardingRequest(
                        username=username,
                        password=password,
                        org=settings.INFLUX_ORG,
                        bucket=settings.INFLUX_BUCKET,
                        retention_period_seconds=retention,
                        token=settings.INFLUX_TOKEN,
                    )
                )
            done.append(f"onboarded InfluxDB: org {settings.INFLUX_ORG}, user {username}")
            say(done[-1])
        else:
            say(f"InfluxDB at {settings.INFLUX_URL} is already onboarded")
        buckets = client.buckets_api()
        with translate_errors("find the organization"):
            orgs = client.organizations_api().find_organizations(org=settings.INFLUX_ORG)
        if not orgs:
            raise SystemExit(f"organization {settings.INFLUX_ORG!r} not found in InfluxDB")
        org_id = orgs[0].id
        for name, seconds, why in (
            (
                settings.INFLUX_BUCKET,
                retention,
                f"telemetry, kept {settings.TELEMETRY_RETENTION_DAYS} days",
            ),
            (settings.INFLUX_BUCKET_AUTH, 0, "device records, kept forever"),
        ):
            with translate_errors(f"look up bucket {name}"):
                existing = buckets.find_bucket_by_name(name)
            if existing is not None:
                say(f"bucket {name} exists ({why.split(',')[0]})")
                continue
            rules = [BucketRetentionRules(type="expire", every_seconds=seconds)] if seconds else []
            with translate_errors(f"create bucket {name}"):
                buckets.create_bucket(bucket_name=name, org_id=org_id, retention_rules=rules)
            done.append(f"created bucket {name} ({why})")
            say(done[-1])
    if not done:
        say("nothing to do: InfluxDB is ready")
    return done
