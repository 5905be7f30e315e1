"""``bai admin resource-group ...`` and ``bai admin fair-share ...`` (ResourceGroupService).

Resource groups (Backend.AI's scaling groups): which scheduler and agent selector each uses,
their options, and which domains and projects may use it; fair-share weights of projects and
users. Writes need a superadmin keypair; the manager decides and says why not.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from bai.client.client import ManagerClient
from bai.client.output import Printer, message_json, when
from bai.common.struct_values import plain
from bai.pb.manager.v1 import admin_service_pb2 as admin_pb
from bai.pb.manager.v1 import resource_group_service_pb2 as pb
from google.protobuf.message import Message
from google.protobuf.struct_pb2 import Struct

__all__ = ["add_resource_group_commands", "admin_actions"]

_SERVICE = "/bai.manager.v1.ResourceGroupService/"
_ALL = admin_pb.PageRequest(limit=1000)
_SCOPES = {"project": pb.FAIR_SHARE_SCOPE_PROJECT, "user": pb.FAIR_SHARE_SCOPE_USER}
_SCOPE_NAMES = {v: k for k, v in _SCOPES.items()}


async def _call(client: ManagerClient, method: str, request: Message, response: type[Any]) -> Any:
    return await client.call(_SERVICE + method, request, response)


def _json_object(text: str) -> Struct:
    """``--scheduler-opts``: a JSON object."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"window_seconds\": 3600}'")
    struct = Struct()
    struct.update(value)
    return struct


def _yes_no(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("yes", "true", "1", "on"):
        return True
    if lowered in ("no", "false", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected yes or no, got {text!r}")


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _group_rows(groups: list[pb.ResourceGroup]) -> list[tuple[str, ...]]:
    return [(g.name, "yes" if g.is_active else "no", g.scheduler, g.agent_selector,
             ",".join(g.allowed_domains) or "*", ",".join(g.allowed_projects) or "*",
             str(g.agent_count), str(g.pending_session_count)) for g in groups]


def _print_group(out: Printer, group: pb.ResourceGroup, verb: str = "") -> None:
    if out.as_json:
        out.json(plain(message_json(group)))
        return
    if verb:
        out.line(f'resource group "{group.name}" {verb}')
    options = json.dumps(plain(message_json(group).get("schedulerOptions", {})),
                         sort_keys=True)
    out.table(("FIELD", "VALUE"), (
        ("name", group.name), ("description", group.description),
        ("active", "yes" if group.is_active else "no"), ("scheduler", group.scheduler),
        ("agent selector", group.agent_selector), ("scheduler options", options),
        ("allowed domains", ", ".join(group.allowed_domains) or "* (every domain)"),
        ("allowed projects", ", ".join(group.allowed_projects) or "* (every project)"),
        ("agents", str(group.agent_count)), ("pending sessions", str(group.pending_session_count)),
        ("created", when(group.create_time))))


# ---- handlers --------------------------------------------------------------------------------


async def _list(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    request = pb.ListResourceGroupsRequest(page=_ALL)
    if args.active is not None:
        request.is_active = args.active
    reply = await _call(client, "ListResourceGroups", request, pb.ListResourceGroupsResponse)
    if out.as_json:
        out.json({"resourceGroups": [plain(message_json(g)) for g in reply.resource_groups],
                  "totalCount": reply.total_count})
    else:
        out.table(("NAME", "ACTIVE", "SCHEDULER", "SELECTOR", "DOMAINS", "PROJECTS", "AGENTS",
                   "PENDING"), _group_rows(list(reply.resource_groups)))
    return 0


async def _info(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    reply = await _call(client, "GetResourceGroup", pb.GetResourceGroupRequest(name=args.name),
                        pb.GetResourceGroupResponse)
    _print_group(out, reply.resource_group)
    return 0


async def _create(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    request = pb.CreateResourceGroupRequest(
        name=args.name, description=args.description or "", is_active=not args.inactive,
        scheduler=args.scheduler or "", agent_selector=args.agent_selector or "",
        allowed_domains=args.allow_domain, allowed_projects=args.allow_project)
    if args.scheduler_opts is not None:
        request.scheduler_options.CopyFrom(args.scheduler_opts)
    reply = await _call(client, "CreateResourceGroup", request, pb.CreateResourceGroupResponse)
    _print_group(out, reply.resource_group, "created")
    return 0


async def _update(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    request = pb.UpdateResourceGroupRequest(name=args.name)
    for field in ("description", "scheduler", "agent_selector"):
        if getattr(args, field) is not None:
            setattr(request, field, getattr(args, field))
    if args.active is not None:
        request.is_active = args.active
    if args.scheduler_opts is not None:
        request.scheduler_options.CopyFrom(args.scheduler_opts)
    if args.allowed_domains is not None:
        request.replace_allowed_domains = True
        request.allowed_domains.extend(args.allowed_domains)
    if args.allowed_projects is not None:
        request.replace_allowed_projects = True
        request.allowed_projects.extend(args.allowed_projects)
    reply = await _call(client, "UpdateResourceGroup", request, pb.UpdateResourceGroupResponse)
    _print_group(out, reply.resource_group, "updated")
    return 0


async def _delete(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    await _call(client, "DeleteResourceGroup", pb.DeleteResourceGroupRequest(name=args.name),
                pb.DeleteResourceGroupResponse)
    if out.as_json:
        out.json({"name": args.name, "deleted": True})
    else:
        out.line(f'resource group "{args.name}" deleted')
    return 0


async def _agents(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    reply = await _call(client, "ListResourceGroupAgents", pb.ListResourceGroupAgentsRequest(
        name=args.name, page=_ALL), pb.ListResourceGroupAgentsResponse)
    if out.as_json:
        out.json({"agents": [message_json(a) for a in reply.agents],
                  "totalCount": reply.total_count})
    else:
        out.table(("ID", "STATUS", "CAPACITY", "OCCUPIED"), (
            (a.id, a.status, json.dumps(dict(a.capacity), sort_keys=True),
             json.dumps(dict(a.occupied), sort_keys=True)) for a in reply.agents))
    return 0


async def _weights(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    scope = _SCOPES.get(args.scope or "", pb.FAIR_SHARE_SCOPE_UNSPECIFIED)
    request = pb.ListFairShareWeightsRequest(page=_ALL, scope=scope)
    reply = await _call(client, "ListFairShareWeights", request, pb.ListFairShareWeightsResponse)
    if out.as_json:
        out.json({"weights": [{"scope": _SCOPE_NAMES[w.scope], "subject": w.subject,
                               "weight": w.weight} for w in reply.weights],
                  "totalCount": reply.total_count})
    else:
        out.table(("SCOPE", "SUBJECT", "WEIGHT"),
                  ((_SCOPE_NAMES[w.scope], w.subject, w.weight) for w in reply.weights))
    return 0


async def _set_weight(client: ManagerClient, args: argparse.Namespace, out: Printer) -> int:
    reply = await _call(client, "SetFairShareWeight", pb.SetFairShareWeightRequest(
        scope=_SCOPES[args.scope], subject=args.subject, weight=args.weight),
        pb.SetFairShareWeightResponse)
    w = reply.weight
    if out.as_json:
        out.json({"scope": _SCOPE_NAMES[w.scope], "subject": w.subject, "weight": w.weight})
    else:
        out.line(f"fair-share weight of {_SCOPE_NAMES[w.scope]} {w.subject} is now {w.weight}")
    return 0


# ---- parser ----------------------------------------------------------------------------------


def admin_actions(commands: Any, common: argparse.ArgumentParser) -> Any:
    """The subcommands of ``bai admin``, creating ``admin`` if no module did yet (so several
    command modules can add to it)."""
    admin = commands.choices.get("admin")
    if admin is None:
        admin = commands.add_parser("admin", help="administration (superadmins write)",
                                    parents=[common])
        admin.add_subparsers(dest="admin_command", metavar="AREA", required=True)
    # argparse offers no public way back to a parser's subcommands: find its one action.
    for action in admin._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise RuntimeError("the admin parser has no subcommands")


def _group_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scheduler", metavar="NAME",
                        help="scheduler plugin: fifo, lifo, drf, fair-share (or installed ones)")
    parser.add_argument("--agent-selector", metavar="NAME",
                        help="agent selector plugin: dispersed, concentrated, round-robin")
    parser.add_argument("--scheduler-opts", type=_json_object, metavar="JSON",
                        help="plugin options as a JSON object (replaces the old ones)")
    parser.add_argument("--description", "-d", metavar="TEXT")


def add_resource_group_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Adds ``bai admin resource-group`` and ``bai admin fair-share``."""
    areas = admin_actions(commands, common)
    group = areas.add_parser("resource-group", help="resource groups (scaling groups)",
                             parents=[common])
    actions = group.add_subparsers(dest="rg_command", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="groups you may see", parents=[common])
    state = listing.add_mutually_exclusive_group()
    state.add_argument("--active", dest="active", action="store_true", default=None,
                       help="only active groups")
    state.add_argument("--inactive", dest="active", action="store_false",
                       help="only inactive groups")
    listing.set_defaults(handler=_list)

    info = actions.add_parser("info", help="one group", parents=[common])
    info.add_argument("name", metavar="NAME")
    info.set_defaults(handler=_info)

    create = actions.add_parser("create", help="create a group (superadmin)", parents=[common])
    create.add_argument("name", metavar="NAME")
    _group_options(create)
    create.add_argument("--inactive", action="store_true", help="create it disabled")
    create.add_argument("--allow-domain", action="append", default=[], metavar="DOMAIN",
                        help="a domain that may use it (repeatable; none: every domain)")
    create.add_argument("--allow-project", action="append", default=[], metavar="PROJECT",
                        help="a project id or DOMAIN/PROJECT that may use it (repeatable; "
                             "none: every project)")
    create.set_defaults(handler=_create)

    update = actions.add_parser("update", help="change a group (superadmin)", parents=[common])
    update.add_argument("name", metavar="NAME")
    _group_options(update)
    update.add_argument("--active", type=_yes_no, metavar="yes|no", help="enable or disable it")
    update.add_argument("--allowed-domains", type=_csv, metavar="D1,D2",
                        help="replace the allowed domains ('' = every domain)")
    update.add_argument("--allowed-projects", type=_csv, metavar="P1,P2",
                        help="replace the allowed projects ('' = every project)")
    update.set_defaults(handler=_update)

    delete = actions.add_parser("delete", help="delete an unused group (superadmin)",
                                parents=[common])
    delete.add_argument("name", metavar="NAME")
    delete.set_defaults(handler=_delete)

    agents = actions.add_parser("agents", help="agents in a group (superadmin, monitor)",
                                parents=[common])
    agents.add_argument("name", metavar="NAME")
    agents.set_defaults(handler=_agents)

    fair = areas.add_parser("fair-share", help="fair-share weights of projects and users",
                            parents=[common])
    fair_actions = fair.add_subparsers(dest="fs_command", metavar="ACTION", required=True)
    weights = fair_actions.add_parser("list", help="weights other than the default 1",
                                      parents=[common])
    weights.add_argument("--scope", choices=tuple(_SCOPES), help="only this scope")
    weights.set_defaults(handler=_weights)
    put = fair_actions.add_parser(
        "set", help="set a weight (superadmin); 1 resets it", parents=[common],
        description="A subject with weight 2 may use twice the share of one with weight 1.")
    put.add_argument("scope", choices=tuple(_SCOPES))
    put.add_argument("subject", metavar="SUBJECT",
                     help="DOMAIN/PROJECT or a project id (project); an e-mail (user)")
    put.add_argument("weight", metavar="WEIGHT", help="a positive decimal, e.g. 2 or 0.5")
    put.set_defaults(handler=_set_weight)
