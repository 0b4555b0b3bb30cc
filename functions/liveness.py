"""Liveness of the app itself: anonymous, reveals nothing but that the host runs the app."""

import json

import azure.functions as func

from orchestrators.blueprints import blueprint

bp = blueprint()


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(json.dumps({"status": "ok"}), mimetype="application/json")
