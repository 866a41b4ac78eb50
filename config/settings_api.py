"""The Data API's settings (the subnet owner's service; docs/data_api.md) and their checks."""

from __future__ import annotations

from pathlib import Path

from config.setting import Setting, SettingsError

DATA_API_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "api_host",
        "--api.host",
        "DATA_API_HOST",
        str,
        "address the Data API binds",
        roles=("data_api",),
    ),
    Setting(
        "api_port",
        "--api.port",
        "DATA_API_PORT",
        int,
        "port the Data API binds (0 = any free port)",
        roles=("data_api",),
        minimum=0,
    ),
    Setting(
        "api_reuse_port",
        "--api.reuse.port",
        "DATA_API_REUSE_PORT",
        bool,
        "let several Data API processes (workers, same database) serve one port (Linux)",
        roles=("data_api",),
    ),
    Setting(
        "api_db",
        "--api.db",
        "DATA_API_DB",
        Path,
        "the Data API's SQLite database (default <workdir>/data_api/data_api.sqlite)",
        roles=("data_api",),
    ),
    Setting(
        "api_database_url",
        "--api.database.url",
        "DATA_API_DATABASE_URL",
        str,
        "postgresql://user:password@host:5432/dbname to share one store between several "
        "Data API instances (docs/data_api.md); unset: the SQLite file --api.db",
        roles=("data_api",),
    ),
    Setting(
        "api_database_pool",
        "--api.database.pool",
        "DATA_API_DATABASE_POOL",
        int,
        "PostgreSQL connections each Data API instance keeps at most",
        roles=("data_api",),
        minimum=1,
    ),
    Setting(
        "api_secret",
        "--api.secret",
        "DATA_API_SECRET",
        str,
        "secret the epoch blocks are derived from (32+ characters; required outside the "
        "local preset, which generates one in the workdir); prefer .env to the flag",
        roles=("data_api",),
    ),
    Setting(
        "api_min_validator_stake",
        "--api.min.validator.stake",
        "DATA_API_MIN_VALIDATOR_STAKE",
        float,
        "stake a validator (with a permit) needs to read blocks, honeypots and S3 data",
        roles=("data_api",),
        minimum=0,
    ),
    Setting(
        "api_requests_per_minute",
        "--api.rate.limit",
        "DATA_API_REQUESTS_PER_MINUTE",
        int,
        "requests per minute one hotkey may send the Data API (429 beyond)",
        roles=("data_api",),
        minimum=1,
    ),
    Setting(
        "api_uploads_per_zipcode",
        "--api.uploads.per.zipcode",
        "DATA_API_UPLOADS_PER_ZIPCODE",
        int,
        "distinct files a miner may upload per epoch, source and zipcode (409 beyond)",
        roles=("data_api",),
        minimum=1,
    ),
    Setting(
        "block_zipcodes",
        "--block.zipcodes",
        "DATA_API_BLOCK_ZIPCODES",
        int,
        "zipcodes in an epoch's block, honeypots included",
        roles=("data_api",),
        minimum=1,
    ),
    Setting(
        "zipcodes_per_batch",
        "--block.batch.size",
        "DATA_API_ZIPCODES_PER_BATCH",
        int,
        "zipcodes per batch of a block",
        roles=("data_api",),
        minimum=1,
    ),
    Setting(
        "rotation_epochs",
        "--block.rotation.epochs",
        "DATA_API_ROTATION_EPOCHS",
        int,
        "a zipcode is not served again until this many epochs have passed "
        "(unless the universe runs out)",
        roles=("data_api",),
        minimum=0,
    ),
    Setting(
        "max_state_share",
        "--block.max.state.share",
        "DATA_API_MAX_STATE_SHARE",
        float,
        "largest share of a block's zipcodes one state may hold",
        roles=("data_api",),
        minimum=0.001,
    ),
    Setting(
        "max_miners_per_coldkey",
        "--block.max.per.coldkey",
        "DATA_API_MAX_MINERS_PER_COLDKEY",
        int,
        "most miners of one coldkey in a group, told to validators in the block",
        roles=("data_api",),
        minimum=1,
    ),
    Setting(
        "min_coldkeys_per_group",
        "--block.min.coldkeys",
        "DATA_API_MIN_COLDKEYS_PER_GROUP",
        int,
        "fewest distinct coldkeys in a group, told to validators in the block",
        roles=("data_api",),
        minimum=1,
    ),
    Setting(
        "honeypots_per_block",
        "--block.honeypots",
        "DATA_API_HONEYPOTS_PER_BLOCK",
        int,
        "honeypot zipcodes mixed into each block (reference and no-residential)",
        roles=("data_api",),
        minimum=0,
    ),
    Setting(
        "s3_endpoint_url",
        "--s3.endpoint",
        "S3_ENDPOINT_URL",
        str,
        "S3-compatible endpoint (MinIO, R2, moto); empty for AWS",
        roles=("data_api",),
    ),
    Setting(
        "s3_bucket",
        "--s3.bucket",
        "S3_BUCKET",
        str,
        "bucket miners upload to (S3 endpoints answer 503 while unset)",
        roles=("data_api",),
    ),
    Setting("s3_region", "--s3.region", "S3_REGION", str, "bucket region", roles=("data_api",)),
    Setting(
        "s3_prefix",
        "--s3.prefix",
        "S3_PREFIX",
        str,
        "key prefix above hotkey=... in the bucket",
        roles=("data_api",),
    ),
    Setting(
        "s3_access_key_id",
        "--s3.access.key.id",
        "S3_ACCESS_KEY_ID",
        str,
        "S3 access key (unset: boto3's usual AWS_* variables, profile or instance role)",
        roles=("data_api",),
    ),
    Setting(
        "s3_secret_access_key",
        "--s3.secret.access.key",
        "S3_SECRET_ACCESS_KEY",
        str,
        "S3 secret key, with S3_ACCESS_KEY_ID; prefer .env to the flag",
        roles=("data_api",),
    ),
    Setting(
        "s3_upload_max_bytes",
        "--s3.upload.max.bytes",
        "S3_UPLOAD_MAX_BYTES",
        int,
        "largest object a miner may upload through one presigned URL",
        roles=("data_api",),
        minimum=1,
    ),
    Setting(
        "s3_url_expiry_s",
        "--s3.url.expiry",
        "S3_URL_EXPIRY_S",
        float,
        "seconds a presigned URL stays valid",
        roles=("data_api",),
        minimum=1,
    ),
)

MIN_SECRET_CHARS = 32  # 32 random characters: far beyond guessing a block ahead of time


def check_data_api(settings) -> None:
    """Raise SettingsError for Data API settings that cannot work together."""
    if settings.api_port > 65535:
        raise SettingsError(
            f"invalid --api.port / DATA_API_PORT: {settings.api_port} is above 65535"
        )
    if settings.api_secret is None and settings.preset != "local":
        raise SettingsError(
            "--api.secret / DATA_API_SECRET is required outside the local preset "
            "(blocks are derived from it)"
        )
    if settings.api_secret is not None and len(settings.api_secret) < MIN_SECRET_CHARS:
        raise SettingsError(
            f"invalid --api.secret / DATA_API_SECRET: needs at least {MIN_SECRET_CHARS} characters"
        )
    url = settings.api_database_url
    if url is not None and not url.startswith(("postgresql://", "postgres://")):
        raise SettingsError(
            "invalid --api.database.url / DATA_API_DATABASE_URL: must start with postgresql://"
        )
    if not settings.max_state_share <= 1:
        raise SettingsError(
            "invalid --block.max.state.share / DATA_API_MAX_STATE_SHARE: must be at most 1"
        )
    if settings.zipcodes_per_batch > settings.block_zipcodes:
        raise SettingsError(
            "invalid --block.batch.size / DATA_API_ZIPCODES_PER_BATCH: "
            f"{settings.zipcodes_per_batch} is above --block.zipcodes {settings.block_zipcodes}"
        )
    if settings.honeypots_per_block >= settings.block_zipcodes:
        raise SettingsError(
            "invalid --block.honeypots / DATA_API_HONEYPOTS_PER_BLOCK: must be below "
            f"--block.zipcodes {settings.block_zipcodes}"
        )
