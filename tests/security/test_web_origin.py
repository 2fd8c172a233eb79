"""The web face's origin checks: DNS rebinding (a foreign host name on a loopback listener) and a second Origin."""

from __future__ import annotations

import aiohttp
from multidict import CIMultiDict

from tests.support.gateway import RunningGateway

LIST_PROPERTIES = "/booking.v1.ReservationService/ListProperties"
CONNECT_JSON = {"Content-Type": "application/json", "Connect-Protocol-Version": "1"}


async def post(gateway: RunningGateway, headers: CIMultiDict[str]) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
        http.post(gateway.web_url + LIST_PROPERTIES, data=b"{}", headers=headers) as response,
    ):
        return response.status, await response.text()


async def test_a_page_on_a_rebound_host_name_cannot_call_a_loopback_gateway(gateway: RunningGateway) -> None:
    port = gateway.server.web_port
    rebound = CIMultiDict({**CONNECT_JSON, "Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"})
    status, text = await post(gateway, rebound)
    assert status == 403
    assert "loopback" in text
    # Without an Origin too (a plain request by that name), and for the browser chat's files.
    status, _ = await post(gateway, CIMultiDict({**CONNECT_JSON, "Host": f"evil.example:{port}"}))
    assert status == 403
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
        http.get(gateway.web_url + "/", headers={"Host": f"evil.example:{port}"}) as response,
    ):
        assert response.status == 403


async def test_loopback_names_still_work_same_origin(gateway: RunningGateway) -> None:
    port = gateway.server.web_port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        status, text = await post(gateway, CIMultiDict({**CONNECT_JSON, "Host": host, "Origin": f"http://{host}"}))
        assert status == 200, text


async def test_a_second_origin_header_is_refused(gateway: RunningGateway) -> None:
    port = gateway.server.web_port
    headers = CIMultiDict({**CONNECT_JSON, "Origin": f"http://127.0.0.1:{port}"})
    headers.add("Origin", "https://evil.example")
    status, text = await post(gateway, headers)
    assert status == 403
    assert "one Origin" in text
