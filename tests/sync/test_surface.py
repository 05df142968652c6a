"""The public surface others build on (the reconciliation, counter and diagnose engineers)."""

from __future__ import annotations

import inspect

import sync
import sync.centre.store as store_pkg
from edge import uplink
from sync.centre.auth import authenticate_device
from sync.centre.store import Store


def test_exported_members():
    assert sorted(sync.__all__) == sorted(n for n in dir(sync) if n[0].isupper() and not n.startswith("_")
                                          and n not in ("BY_CODE",))
    for name in sync.__all__:
        err = getattr(sync, name)
        assert issubclass(err, sync.SyncError) and err.code
    assert len({getattr(sync, n).code for n in sync.__all__}) == len(sync.__all__)  # codes are unique
    for name in store_pkg.__all__:
        assert hasattr(store_pkg, name)
    for name in ("CentreClient", "Uplink", "UplinkStatus", "DownlinkDeferred", "open_uplink", "post_frame"):
        assert name in uplink.__all__


def test_store_api_signatures():
    for name in ("register_device", "device", "put_entries", "put_checked", "high_water", "accepted_entries",
                 "rejections", "put_bundle", "bundle", "latest_bundle", "post_downlink", "downlink_since",
                 "downlink_page", "create_enrol_token", "enrol", "revoke_device"):
        assert callable(getattr(Store, name)), name
    assert list(inspect.signature(Store.post_downlink).parameters)[:4] == ["self", "device", "kind", "payload"]
    assert list(inspect.signature(Store.downlink_since).parameters)[:3] == ["self", "device", "cursor"]
    assert inspect.iscoroutinefunction(authenticate_device)
