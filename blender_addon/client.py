"""The client of `python -m backend serve`, as the add-on and pipeline scripts import it. It lives in
motionmill_common.client (standard library only), which the backend's own tools use too."""
from ._common import client as _client

BackendClient = _client.BackendClient
BackendError = _client.BackendError
BackendCrashed = _client.BackendCrashed
