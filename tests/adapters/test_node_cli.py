"""`relais directory add-node | move-node | set-node-addresses | list`: where a DICOM node may call from."""

from __future__ import annotations

import json

import pytest

from domain.directory import check_calling_addresses
from domain.errors import InvalidFieldError
from tests.adapters.test_cli import cli  # noqa: F401 - the fixture

FINESS = ("directory", "add-establishment", "--finess", "310781406", "--name", "CHU de Toulouse", "--department", "31")


def nodes(cli, capsys) -> dict[str, dict]:  # noqa: F811
    capsys.readouterr()
    assert cli("directory", "list", "--json") == 0
    return {n["aet"]: n for n in json.loads(capsys.readouterr().out)["nodes"]}


def test_calling_addresses_and_the_opt_out_from_the_command_line(cli, capsys):  # noqa: F811
    assert cli(*FINESS) == 0
    assert cli("directory", "add-node", "--aet", "TLSE_GW", "--host", "10.0.0.5", "--port", "104", "--establishment",
               "310781406", "--kind", "gateway", "--address", "10.1.0.0/16", "--address", "gw.chu-toulouse.invalid") == 0
    assert "appels admis depuis 10.0.0.5, 10.1.0.0/16, gw.chu-toulouse.invalid" in capsys.readouterr().out
    assert cli("directory", "add-node", "--aet", "NAT_GW", "--host", "192.0.2.1", "--port", "104", "--establishment",
               "310781406", "--kind", "gateway", "--unverified") == 0
    listed = nodes(cli, capsys)
    assert (listed["TLSE_GW"]["addresses"], listed["TLSE_GW"]["unverified"]) == (["10.1.0.0/16", "gw.chu-toulouse.invalid"], False)
    assert (listed["NAT_GW"]["addresses"], listed["NAT_GW"]["unverified"]) == ([], True)

    assert cli("directory", "set-node-addresses", "--aet", "TLSE_GW", "--address", "10.2.0.9") == 0
    assert cli("directory", "set-node-addresses", "--aet", "NAT_GW") == 0  # checked again: its host only
    assert cli("directory", "move-node", "--aet", "TLSE_GW", "--host", "10.0.0.6", "--port", "11112") == 0
    listed = nodes(cli, capsys)
    assert (listed["TLSE_GW"]["host"], listed["TLSE_GW"]["port"], listed["TLSE_GW"]["addresses"]) == ("10.0.0.6", 11112, ["10.2.0.9"])
    assert (listed["NAT_GW"]["addresses"], listed["NAT_GW"]["unverified"]) == ([], False)
    assert cli("directory", "list") == 0
    text = capsys.readouterr().out
    assert "appels admis depuis 10.0.0.6, 10.2.0.9" in text and "appels admis depuis 192.0.2.1" in text


@pytest.mark.parametrize(
    ("address", "message"),
    [("10.0.0.5/24", "10.0.0.0/24"), ("10.0.0.0/33", "réseau invalide"), ("gw_1!", "adresse invalide"), ("a:b", "adresse invalide")],
)
def test_a_bad_calling_address_is_one_line_and_exit_2(cli, capsys, address, message):  # noqa: F811
    assert cli(*FINESS) == 0
    capsys.readouterr()
    assert cli("directory", "add-node", "--aet", "TLSE_GW", "--host", "10.0.0.5", "--port", "104", "--establishment",
               "310781406", "--kind", "gateway", "--address", address) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert nodes(cli, capsys) == {}  # nothing recorded


def test_calling_addresses_are_written_canonically():
    assert check_calling_addresses([" 10.0.0.1 ", "10.0.0.1", "", "2001:DB8::1", "Gw.Example.org", "192.168.0.0/16"]) == [
        "10.0.0.1", "2001:db8::1", "gw.example.org", "192.168.0.0/16"]
    with pytest.raises(InvalidFieldError):
        check_calling_addresses([f"10.0.{i // 250}.{i % 250}" for i in range(33)])
