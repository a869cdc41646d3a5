"""Render the console's partial templates as the pages do (autoescaped) and parse them."""

import xml.etree.ElementTree as ET
from typing import Any

from jinja2 import Environment, PackageLoader

ENV = Environment(loader=PackageLoader("saga.console"), autoescape=True)


def render(template: str, **variables: Any) -> ET.Element:
    """The partial rendered and parsed as XML (an SVG that does not parse fails here)."""
    return ET.fromstring(ENV.get_template(template).render(**variables).strip())


def elements(root: ET.Element, tag: str, **data: str) -> list[ET.Element]:
    """The elements of that tag (any namespace) whose data-* attributes have these values
    (`data_step="pay"`)."""
    return [
        e
        for e in root.iter()
        if e.tag.rpartition("}")[2] == tag
        if all(e.get(k.replace("_", "-")) == v for k, v in data.items())
    ]


def title(element: ET.Element) -> str:
    """The text of the element's <title>."""
    found = element.find("{*}title")
    assert found is not None, f"no title in {element.attrib}"
    return found.text or ""


def classes(element: ET.Element) -> set[str]:
    return set((element.get("class") or "").split())
