"""Platform images a managed disk or a VM's OS disk is created from (`createOption: FromImage`).

The disk RP (an image version id) and the compute RP (`imageReference` publisher/offer/sku/version)
read the image's OS type, Hyper-V generation and OS disk size from the image; an image that is not
published is refused (404 `PlatformImageNotFound`), a custom or gallery image (`imageReference.id`
naming anything else) is refused as not emulated. The table holds common marketplace images; the
bits of an image are not emulated (the disk is empty, as the helper VM's OS disk is), and any
version of a listed image is taken as published.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from devhost.arm.errors import ArmError


@dataclass(frozen=True)
class PlatformImage:
    publisher: str
    offer: str
    sku: str
    os_type: str
    generation: str
    size_gb: int


IMAGES: Final = (
    PlatformImage("MicrosoftWindowsServer", "WindowsServer", "2016-Datacenter", "Windows", "V1", 127),
    PlatformImage(
        "MicrosoftWindowsServer", "WindowsServer", "2016-Datacenter-smalldisk", "Windows", "V1", 30
    ),
    PlatformImage("MicrosoftWindowsServer", "WindowsServer", "2019-Datacenter", "Windows", "V1", 127),
    PlatformImage("MicrosoftWindowsServer", "WindowsServer", "2022-datacenter-g2", "Windows", "V2", 127),
    PlatformImage(
        "MicrosoftWindowsServer", "WindowsServer", "2022-datacenter-azure-edition", "Windows", "V2", 127
    ),
    PlatformImage("Canonical", "UbuntuServer", "18.04-LTS", "Linux", "V1", 30),
    PlatformImage("Canonical", "0001-com-ubuntu-server-jammy", "22_04-lts-gen2", "Linux", "V2", 30),
    PlatformImage("Canonical", "ubuntu-24_04-lts", "server", "Linux", "V2", 30),
    PlatformImage("Debian", "debian-12", "12-gen2", "Linux", "V2", 30),
    PlatformImage("RedHat", "RHEL", "9-lvm-gen2", "Linux", "V2", 64),
    PlatformImage("SUSE", "sles-15-sp5", "gen2", "Linux", "V2", 30),
)
_IMAGE_ID: Final = re.compile(
    r"^/subscriptions/[^/]+/providers/microsoft\.compute/locations/(?P<location>[^/]+)/publishers/"
    r"(?P<publisher>[^/]+)/artifacttypes/vmimage/offers/(?P<offer>[^/]+)/skus/(?P<sku>[^/]+)/versions/"
    r"(?P<version>[^/]+)$",
    re.IGNORECASE,
)


def resolve(image_id: str, target: str) -> PlatformImage:
    match = _IMAGE_ID.match(image_id)
    if match is None:
        raise ArmError(
            400,
            "InvalidParameter",
            f"imageReference.id '{image_id}' is not a platform image version id "
            "(/Subscriptions/{subscriptionId}/Providers/Microsoft.Compute/Locations/{location}/Publishers/"
            "{publisher}/ArtifactTypes/VMImage/Offers/{offer}/Skus/{sku}/Versions/{version}).",
            target=target,
        )
    wanted = (match["publisher"].lower(), match["offer"].lower(), match["sku"].lower())
    for image in IMAGES:
        if (image.publisher.lower(), image.offer.lower(), image.sku.lower()) == wanted:
            return image
    raise ArmError(
        404,
        "PlatformImageNotFound",
        f"The platform image '{match['publisher']}:{match['offer']}:{match['sku']}:{match['version']}' is not "
        f"available in location {match['location']}. Verify that all fields in the image reference are correct.",
        target=target,
    )


def for_vm(reference: dict[str, object], location: str, target: str) -> PlatformImage:
    """The platform image a VM's `imageReference` names, as the compute RP resolves it."""
    if reference.get("id"):
        image_id = str(reference["id"])
        if _IMAGE_ID.match(image_id) is None:
            raise ArmError(
                400,
                "NotSupported",
                f"The local ARM endpoint does not emulate custom or gallery images ('{image_id}'); it refuses "
                "them rather than create an empty disk from them. Name a platform image (publisher, offer, "
                "sku, version).",
                target=f"{target}.id",
            )
        return resolve(image_id, f"{target}.id")
    publisher, offer, sku = (str(reference.get(k) or "") for k in ("publisher", "offer", "sku"))
    version = str(reference.get("version") or "latest")
    wanted = (publisher.lower(), offer.lower(), sku.lower())
    for image in IMAGES:
        if (image.publisher.lower(), image.offer.lower(), image.sku.lower()) == wanted:
            return image
    raise ArmError(
        404,
        "PlatformImageNotFound",
        f"The platform image '{publisher}:{offer}:{sku}:{version}' is not available. Verify that all fields in "
        "the storage profile are correct. For more details about storage profile information, please refer "
        "to https://aka.ms/storageprofile",
        target=target,
    )
