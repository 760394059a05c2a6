"""The ``[mqtt]`` section and ``[mqtt.tls]``: publishing events to a broker (Home Assistant)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .base import _Section


class MqttTlsConfig(_Section):
    """TLS towards the broker (port 8883 by convention)."""

    enabled: bool = Field(False, description="Connect with TLS")
    ca_file: str | None = Field(
        None, description="PEM file of the CA that signed the broker's certificate; absent: the system CAs"
    )
    certfile: str | None = Field(None, description="Client certificate (PEM) for brokers that require one")
    keyfile: str | None = Field(None, description="Private key (PEM) of the client certificate")
    insecure: bool = Field(
        False,
        description="Skip the host-name check of the broker's certificate (self-signed broker reached by IP); "
        "the chain is still verified",
    )

    @model_validator(mode="after")
    def _key_needs_cert(self) -> "MqttTlsConfig":
        if self.keyfile and not self.certfile:
            raise ValueError("keyfile is set but certfile is not")
        return self


class MqttConfig(_Section):
    """The optional [mqtt] section: publish events to an MQTT broker (Home Assistant)."""

    enabled: bool = Field(False, description="Publish events, state and Home Assistant discovery over MQTT")
    host: str = Field("localhost", min_length=1, description="Broker host name or address")
    port: int | None = Field(
        None, ge=1, le=65535, description="Broker port; absent: 1883, or 8883 with TLS"
    )
    tls: MqttTlsConfig = Field(default_factory=MqttTlsConfig, description="[mqtt.tls] TLS settings")
    username: str | None = Field(None, description="User name; absent: connect anonymously")
    password_file: str | None = Field(
        None,
        description="File holding the password (first line), read at start and never logged; "
        "readable by the service only (e.g. mode 0640, group doorguard)",
    )
    client_id: str | None = Field(
        None, description="MQTT client id; absent: doorguard-<device>. Must be unique on the broker"
    )
    device_name: str | None = Field(
        None, description="Device name in topics and Home Assistant; absent: the host name"
    )
    topic_prefix: str | None = Field(
        None, description="Prefix of every doorguard topic; absent: doorguard/<device>"
    )
    qos: Literal[1, 2] = Field(1, description="QoS of events (1: at least once; consumers dedupe on the event id)")
    outbox_cap: int = Field(
        10_000, ge=1, le=1_000_000,
        description="Most events kept waiting for the broker; past it the oldest unsent are dropped (counted)",
    )
    keepalive: int = Field(60, ge=5, le=65535, description="MQTT keepalive in seconds")
    discovery: bool = Field(True, description="Publish Home Assistant MQTT discovery configs (retained)")
    discovery_prefix: str = Field(
        "homeassistant", min_length=1, description="Home Assistant's discovery prefix"
    )
    state_interval_s: float = Field(
        5.0, ge=0.05, le=3600.0, description="The retained state message is published at most this often"
    )
    reconnect_min_s: float = Field(
        1.0, ge=0.1, le=3600.0, description="First wait before reconnecting to the broker")
    reconnect_max_s: float = Field(
        60.0, ge=0.1, le=86400.0, description="Longest wait between reconnect attempts (back-off)")
    max_inflight: int = Field(20, ge=1, le=1000, description="Events published but not yet acknowledged, at most")

    @model_validator(mode="after")
    def _checks(self) -> "MqttConfig":
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        if self.password_file and not self.username:
            raise ValueError("password_file is set but username is not")
        if self.topic_prefix is not None:
            p = self.topic_prefix.strip("/")
            if not p or any(c in p for c in "+#"):
                raise ValueError("topic_prefix must be non-empty and hold no '+' or '#'")
            self.topic_prefix = p
        return self
