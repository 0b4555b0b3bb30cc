"""Fixtures for the command-line client end to end: migration's local stack, ARM clients and HTTP client
(the same fixtures, imported) and one Ubuntu guest image for the machine the client drives."""

from __future__ import annotations

import pytest

from tests.e2e_migration.conftest import arm, client, crash_points_dir, local_stack
from tests.e2e_migration.guest_images import GuestImage, linux_guest

pytestmark = pytest.mark.e2e

__all__ = ["arm", "client", "crash_points_dir", "guest", "local_stack"]


@pytest.fixture(scope="module")
def guest(tmp_path_factory: pytest.TempPathFactory) -> GuestImage:
    return linux_guest(tmp_path_factory.mktemp("guest"))
