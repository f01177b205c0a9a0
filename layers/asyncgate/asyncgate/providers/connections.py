"""Where each real provider lives and where its API key comes from, by the conventions users rely on:
the provider's own key variable (`REPLICATE_API_TOKEN`, `FAL_KEY`, ...) and a base-URL override
`ASYNCGATE_<PROVIDER>_URL` (fakes in tests, proxies, the local stack).

In AWS the key is not put in the environment: `<KEY VARIABLE>_PARAMETER` names an SSM SecureString
parameter (a name) or a Secrets Manager secret (an ARN), read through Powertools parameters and cached
for five minutes, so a rotated key is picked up without a deploy. Keys never reach logs or errors.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from asyncgate.secrets import SECRET_CACHE_SECONDS, secret_value

KEY_CACHE_SECONDS = SECRET_CACHE_SECONDS


@dataclass(frozen=True)
class Connection:
    provider: str
    # None: the provider takes no key (a declarative provider may not).
    key_variable: str | None
    default_url: str

    @property
    def url_variable(self) -> str:
        return f"ASYNCGATE_{self.provider.upper().replace('-', '_')}_URL"

    @property
    def parameter_variable(self) -> str:
        return f"{self.key_variable}_PARAMETER"

    def base_url(self, environ: Mapping[str, str] = os.environ) -> str:
        return environ.get(self.url_variable) or self.default_url

    def configured(self, environ: Mapping[str, str] = os.environ) -> bool:
        """Whether a key is configured (without fetching it: the catalog asks on every submit)."""
        if self.key_variable is None:
            return True
        return bool(environ.get(self.key_variable) or environ.get(self.parameter_variable))

    def key_from_parameter(self, environ: Mapping[str, str] = os.environ) -> bool:
        """Whether the key is read from SSM or Secrets Manager (so it may rotate while we run)."""
        return self.key_variable is not None and not environ.get(self.key_variable)

    def api_key(self, environ: Mapping[str, str] = os.environ) -> str | None:
        """The key, without the whitespace a pasted secret often ends with (it would break headers)."""
        if self.key_variable is None:
            return None
        if key := environ.get(self.key_variable, "").strip():
            return key
        name = environ.get(self.parameter_variable)
        if not name:
            return None
        return secret_value(name) or None


CONNECTIONS: dict[str, Connection] = {
    connection.provider: connection
    for connection in (
        Connection("replicate", "REPLICATE_API_TOKEN", "https://api.replicate.com"),
        Connection("fal", "FAL_KEY", "https://queue.fal.run"),
        Connection("kie", "KIE_API_KEY", "https://api.kie.ai"),
        Connection("runware", "RUNWARE_API_KEY", "https://api.runware.ai"),
        Connection("openai", "OPENAI_API_KEY", "https://api.openai.com"),
    )
}
