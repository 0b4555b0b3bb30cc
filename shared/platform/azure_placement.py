"""Azure's own answer to "can this VM exist there": the size offered (and not restricted) in the region
of the VNet, with room for the machine's data disks, and the static address inside its subnet and free
in the VNet.

The target settings (enable replication) and the failover settings (PATCH) check their own fields first
(name formats, the address against a prefix the operator gave, the addresses our machines hold); this
asks Azure the rest, with as few round trips as the request allows:

- the VNet is read once (its region decides the sizes, its subnet the address range);
- the sizes of a region come from the Resource SKUs API (`resource_skus.list(filter="location eq ..")`),
  kept per region for `SKU_CACHE_TTL` in this process: the list is large and changes rarely;
- an address is asked about (`CheckIPAddressAvailability`) only when the caller sets or changes it.

Decisions:
- A VNet that does not exist (yet) cannot tell its region: the checks that need it are skipped. An
  operator may enable replication before the landing zone is built; the failover's own steps fail
  clearly when the VNet is still missing then.
- When Azure cannot be asked (an ARM error other than "VNet not found", a timeout), the request is
  refused with 503 and a retry hint (`AzureCheckUnavailable`), never waved through: settings that were
  not checked would fail later, at the failover, when it matters most.
- A size with a `Zone` restriction only is usable (the VM is regional, not zonal); a `Location`
  restriction makes it unusable in that region, as if not offered.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from ipaddress import IPv4Address, IPv4Network, ip_network
from typing import Any, Final

from azure.core.exceptions import AzureError, HttpResponseError
from azure.mgmt.core.tools import parse_resource_id

from shared.domain.errors import FieldProblem, Unavailable
from shared.platform.arm_clients import ArmClients
from shared.platform.clock import Clock

log = logging.getLogger(__name__)

SKU_CACHE_TTL: Final = timedelta(minutes=10)
SUGGESTIONS: Final = 5
RETRY_AFTER_SECONDS: Final = 30
_VCPUS_IN_NAME: Final = re.compile(r"^[A-Za-z]+_[A-Za-z]+(\d+)")


class AzureCheckUnavailable(Unavailable):
    code = "AzureCheckUnavailable"


@dataclass(frozen=True)
class VmSizeOffer:
    """One VM size as a region's SKU list describes it."""

    name: str
    vcpus: int | None
    max_data_disks: int | None
    premium_io: bool
    restriction: str | None  # the reason code of a Location restriction: unusable in the region

    @property
    def usable(self) -> bool:
        return self.restriction is None


@dataclass(frozen=True)
class PlacementCheck:
    """What to ask Azure about one VM's settings; a None `vm_size` or `static_ip` is not asked about."""

    resource_group: str  # where a VNet given by name is
    virtual_network: str  # name or ARM id
    subnet: str
    vm_size: str | None
    static_ip: IPv4Address | None
    data_disks: int
    premium: bool

    @property
    def vnet_group_and_name(self) -> tuple[str, str]:
        if self.virtual_network.startswith("/"):
            parts = parse_resource_id(self.virtual_network)
            return str(parts["resource_group"]), str(parts["name"])
        return self.resource_group, self.virtual_network


@dataclass(frozen=True)
class _Vnet:
    name: str
    location: str
    subnets: dict[str, list[IPv4Network]]  # lower-case name -> its IPv4 prefixes


class AzurePlacement:
    """The checks, with the per-region SKU cache; one per process (see `shared.bootstrap`)."""

    def __init__(
        self, clients: Callable[[], ArmClients], clock: Clock, *, ttl: timedelta = SKU_CACHE_TTL
    ) -> None:
        self._clients = clients
        self._clock = clock
        self._ttl = ttl
        self._lock = threading.Lock()
        self._offers: dict[str, tuple[datetime, dict[str, VmSizeOffer]]] = {}

    def problems(self, check: PlacementCheck) -> list[FieldProblem]:
        """One problem per field Azure refuses; [] when all is well or the VNet does not exist (yet).

        503 `AzureCheckUnavailable` when Azure could not be asked."""
        if check.vm_size is None and check.static_ip is None:
            return []
        vnet = self._vnet(*check.vnet_group_and_name)
        if vnet is None:
            return []
        problems: list[FieldProblem] = []
        if check.static_ip is not None:
            problems += self._address_problems(check, vnet, check.static_ip)
        if check.vm_size is not None:
            problems += self._size_problems(check, vnet, check.vm_size)
        return problems

    def offers(self, location: str) -> dict[str, VmSizeOffer]:
        """The region's VM sizes by lower-case name, from the cache while it is fresh."""
        key = location.lower()
        now = self._clock()
        with self._lock:
            cached = self._offers.get(key)
            if cached is not None and now - cached[0] < self._ttl:
                return cached[1]
        listed = self._call(
            f"list the VM sizes of region {location}",
            lambda c: list(c.compute.resource_skus.list(filter=f"location eq '{key}'")),
        )
        offers = {
            offer.name.lower(): offer
            for offer in (_offer(sku, key) for sku in listed if sku.resource_type == "virtualMachines")
        }
        with self._lock:
            self._offers[key] = (now, offers)
        return offers

    # --- the VNet ------------------------------------------------------------------------------------

    def _vnet(self, group: str, name: str) -> _Vnet | None:
        try:
            vnet = self._clients().network.virtual_networks.get(group, name)
        except HttpResponseError as exc:
            if exc.status_code == 404:
                log.info("VNet %s/%s not found: its region and subnets are checked later", group, name)
                return None
            raise _unavailable(f"read virtual network {name} in resource group {group}", exc) from exc
        except AzureError as exc:
            raise _unavailable(f"read virtual network {name} in resource group {group}", exc) from exc
        subnets: dict[str, list[IPv4Network]] = {}
        for subnet in _attr(vnet, "subnets") or []:
            prefixes = _attr(subnet, "address_prefixes") or [_attr(subnet, "address_prefix")]
            subnets[str(subnet.name).lower()] = [
                network
                for network in (ip_network(str(p), strict=False) for p in prefixes if p)
                if isinstance(network, IPv4Network)
            ]
        return _Vnet(name=name, location=str(vnet.location), subnets=subnets)

    # --- the size ------------------------------------------------------------------------------------

    def _size_problems(self, check: PlacementCheck, vnet: _Vnet, vm_size: str) -> list[FieldProblem]:
        offers = self.offers(vnet.location)
        offer = offers.get(vm_size.lower())
        where = f"region {vnet.location} (the region of VNet {vnet.name})"
        vcpus = offer.vcpus if offer is not None and offer.vcpus else _vcpus_in_name(vm_size)
        if offer is None:
            problem = f"vmSize {vm_size} is not offered in {where}"
        elif not offer.usable:
            problem = (
                f"vmSize {vm_size} is not available to this subscription in {where} ({offer.restriction})"
            )
        elif offer.max_data_disks is not None and check.data_disks > offer.max_data_disks:
            problem = (
                f"vmSize {vm_size} takes at most {offer.max_data_disks} data disks and the machine has "
                f"{check.data_disks}"
            )
        else:
            return []
        alternatives = _alternatives(offers.values(), vcpus, check.data_disks, check.premium)
        wanted = f"{vcpus} vCPUs" if vcpus else "that many vCPUs"
        room = f" and room for {check.data_disks} data disks" if check.data_disks else ""
        premium = " and premium storage" if check.premium else ""
        if alternatives:
            hint = f"sizes offered there with {wanted}{room}{premium}: {', '.join(alternatives)}"
        else:
            hint = f"no size with {wanted}{room}{premium} is offered there: choose another size or region"
        return [FieldProblem("vmSize", f"{problem}; {hint}")]

    # --- the address ---------------------------------------------------------------------------------

    def _address_problems(self, check: PlacementCheck, vnet: _Vnet, ip: IPv4Address) -> list[FieldProblem]:
        prefixes = vnet.subnets.get(check.subnet.lower())
        if prefixes is None:
            known = ", ".join(sorted(vnet.subnets)) or "none"
            return [
                FieldProblem(
                    "subnet",
                    f"VNet {vnet.name} has no subnet {check.subnet} (its subnets: {known}); choose one of "
                    "them or create it",
                )
            ]
        if prefixes and not any(ip in prefix for prefix in prefixes):
            ranges = ", ".join(str(p) for p in prefixes)
            return [
                FieldProblem(
                    "staticIpAddress",
                    f"staticIpAddress {ip} is outside subnet {check.subnet} ({ranges}) of VNet {vnet.name}; "
                    "choose an address inside it",
                )
            ]
        group, name = check.vnet_group_and_name
        try:
            result = self._call(
                f"check whether {ip} is free in virtual network {name}",
                lambda c: c.network.virtual_networks.check_ip_address_availability(
                    group, name, ip_address=str(ip)
                ),
                refused=_NOT_IN_ANY_SUBNET,
            )
        except _Refused:
            return [
                FieldProblem(
                    "staticIpAddress",
                    f"staticIpAddress {ip} is in none of the subnets of VNet {vnet.name}; choose an address "
                    f"inside subnet {check.subnet}",
                )
            ]
        if result.available:
            return []
        free = [
            a
            for a in (result.available_ip_addresses or [])
            if not prefixes or any(IPv4Address(a) in prefix for prefix in prefixes)
        ]
        why = (
            "is reserved by Azure in the subnet (the first four and the last address)"
            if result.is_platform_reserved
            else f"is already in use in VNet {vnet.name}"
        )
        hint = (
            f"free addresses near it: {', '.join(free)}"
            if free
            else f"choose another free address in subnet {check.subnet}"
        )
        return [
            FieldProblem(
                "staticIpAddress", f"staticIpAddress {ip} {why}; {hint}, or null to let Azure assign one"
            )
        ]

    def _call(self, operation: str, call: Callable[[ArmClients], Any], *, refused: str = "") -> Any:
        try:
            return call(self._clients())
        except HttpResponseError as exc:
            if refused and exc.error is not None and exc.error.code == refused:
                raise _Refused from exc
            raise _unavailable(operation, exc) from exc
        except AzureError as exc:
            raise _unavailable(operation, exc) from exc


class _Refused(Exception):
    """Azure answered the question with its own 400: the settings are wrong, not Azure unreachable."""


_NOT_IN_ANY_SUBNET: Final = "PrivateIPAddressNotInAnySubnet"


def _unavailable(operation: str, exc: AzureError) -> AzureCheckUnavailable:
    log.warning("Azure check failed: %s: %s", operation, exc)
    code = getattr(getattr(exc, "error", None), "code", None) or type(exc).__name__
    return AzureCheckUnavailable(
        f"could not {operation} in Azure ({code}), so the settings were not checked and nothing was "
        f"changed; retry in {RETRY_AFTER_SECONDS} seconds",
        retry_after_seconds=RETRY_AFTER_SECONDS,
        details=[{"operation": operation, "armCode": code}],
    )


def _attr(model: Any, name: str) -> Any:
    """A property of an azure-mgmt model, flattened or under `properties` (SDK generations differ)."""
    properties = getattr(model, "properties", None)
    if properties is not None and hasattr(properties, name):
        return getattr(properties, name)
    return getattr(model, name, None)


def _offer(sku: Any, location: str) -> VmSizeOffer:
    capabilities = {str(c.name): str(c.value) for c in sku.capabilities or []}
    restriction = next(
        (
            _text(r.reason_code) or "restricted"
            for r in sku.restrictions or []
            if _text(r.type) == "Location"
            and location in {str(v).lower() for v in [*(r.values_property or []), *_restricted_locations(r)]}
        ),
        None,
    )
    return VmSizeOffer(
        name=str(sku.name),
        vcpus=_int(capabilities.get("vCPUs")),
        max_data_disks=_int(capabilities.get("MaxDataDiskCount")),
        premium_io=capabilities.get("PremiumIO", "False").lower() == "true",
        restriction=restriction,
    )


def _text(value: Any) -> str:
    """An SDK enum member (a str subclass whose str() is its qualified name) or a plain string, as sent."""
    return str(getattr(value, "value", value) or "")


def _restricted_locations(restriction: Any) -> list[str]:
    info = restriction.restriction_info
    return list(info.locations or []) if info is not None else []


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _vcpus_in_name(vm_size: str) -> int | None:
    match = _VCPUS_IN_NAME.match(vm_size)
    return int(match.group(1)) if match else None


def _alternatives(
    offers: Iterable[VmSizeOffer], vcpus: int | None, data_disks: int, premium: bool
) -> list[str]:
    fitting = sorted(
        (
            o.name
            for o in offers
            if o.usable
            and (vcpus is None or o.vcpus == vcpus)
            and (o.max_data_disks is None or o.max_data_disks >= data_disks)
            and (o.premium_io or not premium)
        ),
        key=str.lower,
    )
    return fitting[:SUGGESTIONS]
