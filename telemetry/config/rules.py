"""Rule engine, actions and sinks sections."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr

from telemetry.config.base import Duration, Section, as_written


class RulesConfig(Section):
    paths: list[str] = Field(
        default_factory=lambda: ["rules/"],
        description="Files or folders of alarm and trigger definitions; a relative path names the shipped rules/ first, "
        "then the current folder; list other paths without rules/ to replace the shipped rules",
    )
    enabled: bool = Field(True, description="Run the rule engine (alarms and triggers) in server and all-in-one modes")
    tick: Duration = Field(1.0, gt=0, le=60, description="Seconds between time-based evaluations (nodata, insufficient data)")
    history_ttl: Duration = Field(as_written("30d"), gt=0, description="How long alarm history (transitions, changes) is kept")
    hosts: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Roles per host (e.g. cn01: [compute]); each role's template in rules/templates applies to the host",
    )


class SmtpConfig(Section):
    """The mail relay ``mailto:`` actions go through."""

    host: str = Field("127.0.0.1", description="SMTP server host")
    port: int = Field(25, ge=1, le=65535, description="SMTP server port (587 for submission with STARTTLS)")
    starttls: bool = Field(False, description="Upgrade the connection with STARTTLS before AUTH and sending")
    username: str | None = Field(None, description="SMTP AUTH user; no AUTH when unset")
    password: SecretStr | None = Field(None, description="SMTP AUTH password")
    from_addr: str = Field("telemetry@localhost", description="From: address of alarm mails")
    ca_file: str | None = Field(None, description="CA bundle to verify the server's certificate (system CAs if unset)")
    verify: bool = Field(True, description="Verify the server's TLS certificate and host name")


class PagerDutyConfig(Section):
    """PagerDuty Events API v2; ``pagerduty://ROUTING_KEY`` actions post here."""

    url: str = Field("https://events.pagerduty.com/v2/enqueue", description="Events API v2 enqueue endpoint")


class KeystoneConfig(Section):
    """This service's Keystone user: tokens for Heat ``signal_url`` actions (``trust+http(s)://``), scoped to the
    URL's trust or to ``project_name``."""

    auth_url: str = Field(..., description="Keystone v3 endpoint, e.g. http://keystone:5000/v3")
    username: str = Field(..., description="User name")
    password: SecretStr = Field(..., description="Password")
    project_name: str = Field(..., description="Project to scope the token to")
    user_domain_name: str = Field("Default", description="Domain of the user")
    project_domain_name: str = Field("Default", description="Domain of the project")
    ca_file: str | None = Field(None, description="CA bundle of Keystone's certificate (system CAs if unset)")

    def password_auth(self) -> dict[str, Any]:
        """The ``POST /v3/auth/tokens`` body of a project-scoped password authentication."""
        return {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": self.username, "domain": {"name": self.user_domain_name},
                "password": self.password.get_secret_value()}}},
            "scope": {"project": {"name": self.project_name, "domain": {"name": self.project_domain_name}}}}}


class HeatConfig(Section):
    """Heat scaling-policy signals."""

    cooldown: Duration = Field(
        as_written("300s"),
        description="At most one signal per scaling policy in this period, so a flapping alarm cannot thrash a group",
    )
    keystone: KeystoneConfig | None = Field(
        None, description="The service user whose trust-scoped (trust+http://TRUST_ID@...) or project-scoped tokens "
                          "signal_url actions carry; none for pre-signed alarm_url")
    endpoints: list[str] = Field(
        default_factory=list,
        description="Heat's API and CFN API URLs (http://heat:8004, http://heat:8000): alarms created through the "
        "API may signal them without listing them in allowed_targets",
    )


class InhibitConfig(Section):
    """Mute lower-severity actions while a related higher-severity alarm fires (Alertmanager inhibit_rules)."""

    source_severity: list[str] = Field(default_factory=lambda: ["critical"], description="Severities that inhibit")
    target_severity: list[str] = Field(
        default_factory=lambda: ["low", "moderate", "warning"], description="Severities whose actions are inhibited"
    )
    equal: list[str] = Field(
        default_factory=lambda: ["host"], description="Labels that must be equal for two alarms to be related"
    )


class ActionsConfig(Section):
    """Alarm actions: webhooks, chat, pager, mail and Heat signals, delivered through a durable outbox."""

    enabled: bool = Field(True, description="Run the action dispatcher on the server")
    timeout: Duration = Field(as_written("10s"), description="Timeout of one delivery attempt (connect + response)")
    max_attempts: int = Field(8, ge=1, description="Attempts before a notification goes to the dead-letter list")
    backoff_initial: Duration = Field(as_written("1s"), description="First retry delay; doubles each attempt, with full jitter")
    backoff_max: Duration = Field(as_written("5m"), description="Longest delay between two attempts")
    concurrency: int = Field(8, ge=1, description="Deliveries in flight at once")
    retention: Duration = Field(as_written("7d"), description="How long delivered items and the delivery log are kept")
    repeat_interval: Duration = Field(
        as_written("1h"),
        description="With repeat_actions, send a repeat of the same state at most this often per alarm and action",
    )
    group_by: list[str] = Field(
        default_factory=list, description="Labels (e.g. role) whose transitions are grouped into one message; empty: no grouping"
    )
    group_wait: Duration = Field(as_written("5s"), description="How long to collect transitions of one group before sending")
    inhibit: InhibitConfig | None = Field(
        default_factory=InhibitConfig,
        description="Inhibition of warning-level actions while a related critical alarm fires; null disables",
    )
    webhook_format: Literal["aodh", "alertmanager"] = Field(
        "aodh", description="Body of plain http(s):// actions; alertmanager+http(s):// chooses per action"
    )
    signing_secret: SecretStr | None = Field(
        None, description="Shared secret for the HMAC-SHA256 signature header on outgoing webhooks"
    )
    signature_header: str = Field("X-Telemetry-Signature", description="Header carrying sha256=<hex HMAC of the body>")
    allowed_targets: list[str] = Field(
        default_factory=list,
        description="Hosts (name, *.domain) or networks (CIDR) that alarm actions set through the API may reach; "
        "more can be added through PUT /v1/actions/allowlist. Empty: public addresses only",
    )
    link: str | None = Field(
        None, description="Link template in chat, mail and pager messages, e.g. https://grafana/d/x?var-alarm={alarm_id}; "
        "default: the alarm in this daemon's API"
    )
    smtp: SmtpConfig = Field(default_factory=SmtpConfig)
    pagerduty: PagerDutyConfig = Field(default_factory=PagerDutyConfig)
    heat: HeatConfig = Field(default_factory=HeatConfig)
