// Render the app's OpenAPI document as plain HTML (no CDN: works offline).
"use strict";

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function schemaText(schema, spec) {
  if (!schema) return "";
  if (schema.$ref) return schema.$ref.split("/").pop();
  if (schema.anyOf) return schema.anyOf.map((s) => schemaText(s, spec)).join(" | ");
  if (schema.enum) return schema.enum.join(" | ");
  if (schema.type === "array") return schemaText(schema.items, spec) + "[]";
  return schema.format ? `${schema.type} (${schema.format})` : schema.type || "";
}

function propertiesTable(schema, spec) {
  const table = el("table");
  const head = el("tr");
  for (const h of ["field", "type", "description"]) head.appendChild(el("th", h));
  table.appendChild(head);
  const required = new Set(schema.required || []);
  for (const [name, prop] of Object.entries(schema.properties || {})) {
    const row = el("tr");
    row.appendChild(el("td", name + (required.has(name) ? " *" : "")));
    row.appendChild(el("td", schemaText(prop, spec)));
    const extra = prop.default !== undefined ? ` (default ${prop.default})` : "";
    row.appendChild(el("td", (prop.description || prop.title || "") + extra));
    table.appendChild(row);
  }
  return table;
}

async function render() {
  const spec = await (await fetch("/openapi.json")).json();
  const root = document.getElementById("api");
  const intro = el("section");
  intro.appendChild(el("h2", `${spec.info.title} ${spec.info.version}`));
  intro.appendChild(el("p", spec.info.description || ""));
  root.appendChild(intro);
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const section = el("section");
      section.appendChild(el("h2", `${method.toUpperCase()} ${path}`));
      if (op.summary) section.appendChild(el("p", op.summary));
      if (op.description) section.appendChild(el("p", op.description, "hint"));
      const params = op.parameters || [];
      if (params.length) {
        section.appendChild(el("h3", "Parameters"));
        const schema = { properties: {}, required: [] };
        for (const p of params) {
          schema.properties[`${p.name} (${p.in})`] = { ...p.schema, description: p.description };
          if (p.required) schema.required.push(`${p.name} (${p.in})`);
        }
        section.appendChild(propertiesTable(schema, spec));
      }
      const body = op.requestBody && op.requestBody.content;
      if (body) {
        for (const [type, media] of Object.entries(body)) {
          section.appendChild(el("h3", `Body: ${type}`));
          let schema = media.schema || {};
          if (schema.$ref) schema = spec.components.schemas[schema.$ref.split("/").pop()];
          section.appendChild(propertiesTable(schema, spec));
        }
      }
      const responses = el("ul");
      for (const [code, response] of Object.entries(op.responses || {})) {
        const content = response.content || {};
        const types = Object.entries(content).map(([t, m]) => `${t} ${schemaText(m.schema, spec)}`).join(", ");
        responses.appendChild(el("li", `${code}: ${response.description || ""} ${types}`));
      }
      section.appendChild(el("h3", "Responses"));
      section.appendChild(responses);
      root.appendChild(section);
    }
  }
  const schemas = (spec.components && spec.components.schemas) || {};
  for (const [name, schema] of Object.entries(schemas)) {
    if (!schema.properties) continue;
    const section = el("section");
    section.appendChild(el("h2", `Schema ${name}`));
    if (schema.description) section.appendChild(el("p", schema.description, "hint"));
    section.appendChild(propertiesTable(schema, spec));
    root.appendChild(section);
  }
}

render();
