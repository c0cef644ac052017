"""skinfix_nb: Runflow's Skin Fix retouching model, native in Jupyter and Colab.

>>> import skinfix_nb as sf
>>> client = sf.connect()              # RUNFLOW_API_KEY, a Colab secret, or the local backend
>>> run = client.run(image_url)        # submit and wait
>>> sf.compare(run)                    # before / after
>>> out = df.skinfix.submit("image_url")

Public names load on first use, so ``import skinfix_nb`` stays fast (no OpenCV, no
HTTP client, no event loop); importing it registers the ``df.skinfix`` accessor.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from skinfix_nb import _lazy
from skinfix_nb import accessor as _accessor  # noqa: F401  (registers df.skinfix)

if TYPE_CHECKING:
    from skinfix_nb import local
    from skinfix_nb.callbacks import (
        CallbackEvent,
        CallbackReceiver,
        parse_callback,
        verify_signature,
    )
    from skinfix_nb.client import AsyncSkinFix, SkinFix, connect, connect_async
    from skinfix_nb.display import compare, gallery, review, upload_form
    from skinfix_nb.errors import (
        APIConnectionError,
        APIError,
        APITimeoutError,
        AuthenticationError,
        BadRequestError,
        ConfigurationError,
        ConflictError,
        ImageTooLargeError,
        InsufficientCreditError,
        InvalidCallback,
        InvalidImageError,
        InvalidSignature,
        NotFoundError,
        PermissionDeniedError,
        RateLimitError,
        RunFailedError,
        RunflowError,
        RunTimeoutError,
        ServerError,
        ValidationError,
    )
    from skinfix_nb.local.engine import retouch
    from skinfix_nb.loops import enable_nested_loops
    from skinfix_nb.models import Run

try:
    __version__ = version("skinfix-nb")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AsyncSkinFix",
    "AuthenticationError",
    "BadRequestError",
    "CallbackEvent",
    "CallbackReceiver",
    "ConfigurationError",
    "ConflictError",
    "ImageTooLargeError",
    "InsufficientCreditError",
    "InvalidCallback",
    "InvalidImageError",
    "InvalidSignature",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "Run",
    "RunFailedError",
    "RunTimeoutError",
    "RunflowError",
    "ServerError",
    "SkinFix",
    "ValidationError",
    "__version__",
    "compare",
    "connect",
    "connect_async",
    "enable_nested_loops",
    "gallery",
    "local",
    "parse_callback",
    "retouch",
    "review",
    "upload_form",
    "verify_signature",
]

# public name -> module that defines it, imported on first use
_LAZY: dict[str, str] = {
    "APIConnectionError": "skinfix_nb.errors",
    "APIError": "skinfix_nb.errors",
    "APITimeoutError": "skinfix_nb.errors",
    "AsyncSkinFix": "skinfix_nb.client",
    "AuthenticationError": "skinfix_nb.errors",
    "BadRequestError": "skinfix_nb.errors",
    "CallbackEvent": "skinfix_nb.callbacks",
    "CallbackReceiver": "skinfix_nb.callbacks",
    "ConfigurationError": "skinfix_nb.errors",
    "ConflictError": "skinfix_nb.errors",
    "ImageTooLargeError": "skinfix_nb.errors",
    "InsufficientCreditError": "skinfix_nb.errors",
    "InvalidCallback": "skinfix_nb.errors",
    "InvalidImageError": "skinfix_nb.errors",
    "InvalidSignature": "skinfix_nb.errors",
    "NotFoundError": "skinfix_nb.errors",
    "PermissionDeniedError": "skinfix_nb.errors",
    "RateLimitError": "skinfix_nb.errors",
    "Run": "skinfix_nb.models",
    "RunFailedError": "skinfix_nb.errors",
    "RunTimeoutError": "skinfix_nb.errors",
    "RunflowError": "skinfix_nb.errors",
    "ServerError": "skinfix_nb.errors",
    "SkinFix": "skinfix_nb.client",
    "ValidationError": "skinfix_nb.errors",
    "compare": "skinfix_nb.display.comparison",
    "connect": "skinfix_nb.client",
    "connect_async": "skinfix_nb.client",
    "enable_nested_loops": "skinfix_nb.loops",
    "gallery": "skinfix_nb.display.gallery_grid",
    "local": "skinfix_nb.local",
    "parse_callback": "skinfix_nb.callbacks",
    "retouch": "skinfix_nb.local.engine",
    "review": "skinfix_nb.display.review_widget",
    "upload_form": "skinfix_nb.display.upload",
    "verify_signature": "skinfix_nb.callbacks",
}


__getattr__ = _lazy.loader("skinfix_nb", _LAZY, globals())


def __dir__() -> list[str]:
    return __all__
