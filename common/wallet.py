"""The process's wallet and hotkey, named by the wallet settings (every role loads it alike)."""

from __future__ import annotations

from pathlib import Path

from config.settings import Settings, SettingsError


def load_wallet(settings: Settings):
    """(wallet, hotkey keypair); SettingsError, one line, when the keyfile cannot be read."""
    import bittensor as bt

    wallet = bt.Wallet(
        name=settings.wallet_name,
        hotkey=settings.wallet_hotkey,
        path=str(Path(settings.wallet_path).expanduser()),
    )
    try:
        keypair = wallet.hotkey
    except Exception as exc:  # the SDK raises its own error kinds for missing keyfiles
        raise SettingsError(
            f"cannot load hotkey {settings.wallet_name}/{settings.wallet_hotkey} "
            f"from {settings.wallet_path}: {exc}"
        ) from exc
    return wallet, keypair
