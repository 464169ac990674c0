"""GET /quote?user_id=&amount=&rate=&term= and GET /health."""

from __future__ import annotations

import os

from django.conf import settings
from django.http import HttpRequest, JsonResponse

from . import formula
from .memo import memo_quote


def _int_param(request: HttpRequest, name: str) -> int:
    raw = request.GET.get(name)
    if raw is None:
        raise ValueError(f"missing parameter {name}")
    if not raw.isascii() or not raw.isdigit() or len(raw) > 15:
        raise ValueError(f"{name} must be a non-negative integer")
    value = int(raw)
    low, high = formula.LIMITS[name]
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}")
    return value


def quote(request: HttpRequest) -> JsonResponse:
    try:
        args = [_int_param(request, n) for n in ("user_id", "amount", "rate", "term")]
    except ValueError as e:
        return JsonResponse({"error": str(e)}, status=400)
    result = memo_quote(*args)
    return JsonResponse({"quote": result, "pid": os.getpid(), "memo": settings.LOAN_MEMO})


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True, "pid": os.getpid(), "memo": settings.LOAN_MEMO})
