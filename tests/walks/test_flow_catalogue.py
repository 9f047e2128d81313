"""The flow catalogue over real gRPC: categories, tags, search ranking,
filters that combine, orders, paging, and another account's catalogue."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from flowpilot.walks.v1 import walks_pb2 as pb
from google.protobuf import field_mask_pb2

from services.core.auth import Role
from tests.support import Keys
from tests.support import expect_error as _fails
from tests.walks.helpers import R, Tech, printer_tree


@pytest.fixture
def tech(walks_channel: grpc.aio.Channel, keys: Keys) -> Tech:
    return Tech(walks_channel, keys)


async def _category(tech: Tech, name: str, parent: str = "") -> Any:
    request = pb.CreateFlowCategoryRequest(flow_category=pb.FlowCategory(display_name=name, parent=parent))
    return await tech.call("CreateFlowCategory", request)


async def _flow(tech: Tech, name: str, **fields: Any) -> Any:
    publish = fields.pop("publish", True)
    tree = fields.pop("tree", None) or printer_tree()
    flow = await tech.call(
        "CreateFlow", pb.CreateFlowRequest(flow=pb.Flow(display_name=name, tree=tree, **fields))
    )
    if publish:
        flow = await tech.call("PublishFlow", pb.PublishFlowRequest(name=flow.name))
    return flow


async def _names(tech: Tech, **filters: Any) -> list[str]:
    listed = await tech.call("ListFlows", pb.ListFlowsRequest(**filters))
    return [f.display_name for f in listed.flows]


def _one_node(text: str) -> pb.Tree:
    return pb.Tree(root="r", nodes=[pb.Node(id="r", kind=R, text=text)])


async def test_categories_form_a_small_tree(tech: Tech) -> None:
    top = await _category(tech, "Printing")
    assert top.depth == 1 and top.parent == "" and top.name.startswith("flowCategories/")
    child = await _category(tech, "Drivers", top.name)
    grandchild = await _category(tech, "Windows", child.name)
    assert (child.depth, grandchild.depth, grandchild.parent) == (2, 3, child.name)
    await _fails(
        _category(tech, "Too deep", grandchild.name),
        grpc.StatusCode.FAILED_PRECONDITION,
        reason="CATEGORY_TOO_DEEP",
    )
    await _fails(_category(tech, "printing"), grpc.StatusCode.ALREADY_EXISTS, reason="CATEGORY_NAME_TAKEN")
    await _fails(_category(tech, " DRIVERS ", top.name), grpc.StatusCode.ALREADY_EXISTS)
    await _category(tech, "Drivers")  # the same name elsewhere in the tree
    listed = await tech.call("ListFlowCategories", pb.ListFlowCategoriesRequest())
    assert [c.display_name for c in listed.flow_categories] == ["Drivers", "Drivers", "Printing", "Windows"]
    children = await tech.call("ListFlowCategories", pb.ListFlowCategoriesRequest(parent=top.name))
    assert [c.name for c in children.flow_categories] == [child.name]
    paged = await tech.call("ListFlowCategories", pb.ListFlowCategoriesRequest(page_size=3))
    rest = await tech.call(
        "ListFlowCategories", pb.ListFlowCategoriesRequest(page_token=paged.next_page_token)
    )
    assert len(paged.flow_categories) == 3 and len(rest.flow_categories) == 1 and not rest.next_page_token
    assert await tech.call("GetFlowCategory", pb.GetFlowCategoryRequest(name=child.name)) == child


async def test_only_empty_categories_are_deleted(tech: Tech) -> None:
    top = await _category(tech, "Network")
    child = await _category(tech, "VPN", top.name)
    flow = await _flow(tech, "VPN drops", category=child.name)
    delete = pb.DeleteFlowCategoryRequest
    await _fails(
        tech.call("DeleteFlowCategory", delete(name=top.name)),
        grpc.StatusCode.FAILED_PRECONDITION,
        reason="CATEGORY_NOT_EMPTY",
    )
    await _fails(
        tech.call("DeleteFlowCategory", delete(name=child.name)), grpc.StatusCode.FAILED_PRECONDITION
    )
    moved = await tech.call(
        "UpdateFlow",
        pb.UpdateFlowRequest(
            flow=pb.Flow(name=flow.name), update_mask=field_mask_pb2.FieldMask(paths=["category"])
        ),
    )
    assert moved.category == "" and moved.version == flow.version
    await tech.call("DeleteFlowCategory", delete(name=child.name))
    await tech.call("DeleteFlowCategory", delete(name=top.name))
    await _fails(
        tech.call("GetFlowCategory", pb.GetFlowCategoryRequest(name=top.name)), grpc.StatusCode.NOT_FOUND
    )


async def test_roles_and_limits_of_categories(tech: Tech) -> None:
    viewer = tech.as_role(Role.VIEWER)
    await _fails(_category(viewer, "x"), grpc.StatusCode.PERMISSION_DENIED)
    await _fails(
        tech.as_role(Role.ENGINEER).call(
            "DeleteFlowCategory",
            pb.DeleteFlowCategoryRequest(name="flowCategories/00000000-0000-4000-8000-000000000000"),
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await viewer.call("ListFlowCategories", pb.ListFlowCategoriesRequest())
    await _fails(
        _category(tech, "x" * 101), grpc.StatusCode.INVALID_ARGUMENT, field="flow_category.display_name"
    )
    await _fails(_category(tech, "  "), grpc.StatusCode.INVALID_ARGUMENT, field="flow_category.display_name")
    await _fails(
        _category(tech, "x", "flows/1"), grpc.StatusCode.INVALID_ARGUMENT, field="flow_category.parent"
    )


async def test_tags_are_normalized_and_limited(tech: Tech) -> None:
    flow = await _flow(tech, "Tagged", tags=[" VPN ", "vpn", "Remote-Work"])
    assert list(flow.tags) == ["vpn", "remote-work"]
    create = pb.CreateFlowRequest
    too_many = create(flow=pb.Flow(display_name="x", tree=printer_tree(), tags=[f"t{i}" for i in range(21)]))
    await _fails(tech.call("CreateFlow", too_many), grpc.StatusCode.INVALID_ARGUMENT, field="flow.tags")
    too_long = create(flow=pb.Flow(display_name="x", tree=printer_tree(), tags=["ok", "x" * 41]))
    await _fails(tech.call("CreateFlow", too_long), grpc.StatusCode.INVALID_ARGUMENT, field="flow.tags[1]")
    retagged = await tech.call(
        "UpdateFlow",
        pb.UpdateFlowRequest(
            flow=pb.Flow(name=flow.name, tags=["Printers"]),
            update_mask=field_mask_pb2.FieldMask(paths=["tags"]),
        ),
    )
    assert list(retagged.tags) == ["printers"] and retagged.display_name == "Tagged"
    # An update without a mask changes the three fields it always did, never tags.
    kept = await tech.call(
        "UpdateFlow",
        pb.UpdateFlowRequest(flow=pb.Flow(name=flow.name, display_name="Renamed", tree=printer_tree())),
    )
    assert list(kept.tags) == ["printers"]


async def test_search_ranks_title_over_description_over_node_text(tech: Tech) -> None:
    await _flow(tech, "Mailbox full", tree=_one_node("Archive old mail; the scanner is unrelated"))
    await _flow(tech, "Paper jam", description="When the scanner jams", tree=_one_node("Open tray 2"))
    await _flow(tech, "Scanner offline", tree=_one_node("Restart it"))
    await _flow(tech, "Unrelated", tree=_one_node("Nothing here"))
    assert await _names(tech, query="scanner") == ["Scanner offline", "Paper jam", "Mailbox full"]
    # (ts_rank weighs an excluded term oddly, as in the library: only membership here.)
    assert sorted(await _names(tech, query="scanner -jams")) == ["Mailbox full", "Scanner offline"]
    assert await _names(tech, query='"old mail"') == ["Mailbox full"]
    assert await _names(tech, query="-- || (") == []  # nothing but punctuation: no term, no match
    ranked = await tech.call("ListFlows", pb.ListFlowsRequest(query="scanner", page_size=1))
    seen = [ranked.flows[0].display_name]
    while ranked.next_page_token:
        ranked = await tech.call(
            "ListFlows", pb.ListFlowsRequest(query="scanner", page_size=1, page_token=ranked.next_page_token)
        )
        seen += [f.display_name for f in ranked.flows]
    assert seen == ["Scanner offline", "Paper jam", "Mailbox full"]
    await _fails(
        tech.call(
            "ListFlows",
            pb.ListFlowsRequest(query="printer", page_size=1, page_token=ranked.next_page_token or "x"),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )


async def test_filters_combine(tech: Tech) -> None:
    network = await _category(tech, "Network")
    vpn = await _category(tech, "VPN", network.name)
    printing = await _category(tech, "Printing")
    await _flow(tech, "VPN drops", category=vpn.name, tags=["remote"])
    await _flow(tech, "VPN slow", category=vpn.name, tags=["remote", "performance"], publish=False)
    await _flow(tech, "Wi-Fi slow", category=network.name, tags=["performance"])
    await _flow(tech, "Printer slow", category=printing.name, tags=["performance"])
    await _flow(tech, "No category slow", tags=["performance"])
    published = pb.FLOW_STATUS_PUBLISHED
    assert await _names(tech, category=network.name) == [
        "VPN drops",
        "VPN slow",
        "Wi-Fi slow",
    ]  # with subcategories
    assert await _names(tech, category=vpn.name) == ["VPN drops", "VPN slow"]
    assert await _names(tech, tag="PERFORMANCE") == [
        "No category slow",
        "Printer slow",
        "VPN slow",
        "Wi-Fi slow",
    ]
    assert await _names(tech, tag="performance", category=network.name) == ["VPN slow", "Wi-Fi slow"]
    assert await _names(tech, tag="performance", category=network.name, status=published) == ["Wi-Fi slow"]
    assert await _names(tech, query="slow", category=network.name, status=published) == ["Wi-Fi slow"]
    assert await _names(tech, query="slow", tag="remote") == ["VPN slow"]
    assert await _names(tech, query="drops", tag="performance") == []
    await _fails(
        tech.call("ListFlows", pb.ListFlowsRequest(category="flows/x")),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="category",
    )
    first = await tech.call("ListFlows", pb.ListFlowsRequest(tag="performance", page_size=2))
    await _fails(
        tech.call(
            "ListFlows", pb.ListFlowsRequest(tag="remote", page_size=2, page_token=first.next_page_token)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        reason="INVALID_PAGE_TOKEN",
    )


async def test_orders_by_usage_and_recency(tech: Tech) -> None:
    quiet = await _flow(tech, "Quiet")
    busy = await _flow(tech, "Busy")
    middling = await _flow(tech, "Middling")
    for flow, walks in ((busy, 3), (middling, 1)):
        for _ in range(walks):
            await tech.start(kind=pb.WALK_KIND_FLOW, flow=flow.name)
    read = await tech.call("GetFlow", pb.GetFlowRequest(name=busy.name))
    assert read.usage_count == 3
    assert await _names(tech, order_by=pb.FLOW_ORDER_USAGE) == ["Busy", "Middling", "Quiet"]
    assert await _names(tech, order_by=pb.FLOW_ORDER_RECENCY) == ["Middling", "Busy", "Quiet"]
    assert await _names(tech) == ["Busy", "Middling", "Quiet"]
    page = await tech.call("ListFlows", pb.ListFlowsRequest(order_by=pb.FLOW_ORDER_USAGE, page_size=2))
    rest = await tech.call(
        "ListFlows",
        pb.ListFlowsRequest(order_by=pb.FLOW_ORDER_USAGE, page_size=2, page_token=page.next_page_token),
    )
    assert [f.name for f in rest.flows] == [quiet.name] and not rest.next_page_token
    await _fails(
        tech.call("ListFlows", pb.ListFlowsRequest(order_by=pb.FLOW_ORDER_RELEVANCE)),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="order_by",
    )


async def test_another_accounts_catalogue_is_invisible(tech: Tech) -> None:
    mine = await _category(tech, "Mine")
    await _flow(tech, "Secret scanner flow", category=mine.name, tags=["secret"])
    other = Tech(tech.channel, tech.keys)
    await _fails(
        other.call("GetFlowCategory", pb.GetFlowCategoryRequest(name=mine.name)), grpc.StatusCode.NOT_FOUND
    )
    await _fails(
        other.call("DeleteFlowCategory", pb.DeleteFlowCategoryRequest(name=mine.name)),
        grpc.StatusCode.NOT_FOUND,
    )
    await _fails(_category(other, "Child", mine.name), grpc.StatusCode.NOT_FOUND)
    await _fails(_flow(other, "Mine too", category=mine.name), grpc.StatusCode.NOT_FOUND)
    listed = await other.call("ListFlowCategories", pb.ListFlowCategoriesRequest())
    assert list(listed.flow_categories) == []
    assert await _names(other, category=mine.name) == []
    assert await _names(other, query="scanner") == []
    assert await _names(other, tag="secret") == []
    # The same name is free in another account.
    await _category(other, "Mine")
