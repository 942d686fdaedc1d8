// The palette: every processor type of `GET /api/registry` (but control-plane ones), searchable
// by name, description and port; choosing one opens the add form.
import { useState } from "react";
import type { RegistryEntry } from "./api";

function ports(entry: RegistryEntry): string {
  const list = (side: string, ps: RegistryEntry["inputs"]) => ps.map((p) => `${side} ${p.name} (${p.frame_type})`);
  return [...list("in", entry.inputs), ...list("out", entry.outputs)].join(", ") || "no ports";
}

/** The searchable list of processor types; `onPick` opens the form for one. */
export function Palette({ registry, onPick }: { registry: RegistryEntry[]; onPick: (entry: RegistryEntry) => void }) {
  const [query, setQuery] = useState("");
  const q = query.trim().toLowerCase();
  const shown = registry
    .filter((e) => !e.control_plane)
    .filter((e) => !q || `${e.type_name} ${e.description} ${ports(e)}`.toLowerCase().includes(q));
  return (
    <nav className="palette" aria-label="processor palette">
      <h2>Add a processor</h2>
      <input
        type="search"
        placeholder="search types, ports…"
        aria-label="search processor types"
        value={query}
        onChange={(e) => setQuery(e.target.value)}
        onKeyDown={(e) => {
          if (e.key === "Enter" && shown.length > 0) onPick(shown[0]);
        }}
      />
      <ul>
        {shown.map((e) => (
          <li key={e.type_name}>
            <button type="button" onClick={() => onPick(e)} title={ports(e)} data-type={e.type_name}>
              <strong>{e.type_name.replace(/Processor$/, "")}</strong>
              <span>{e.description}</span>
              <span className="chips">
                {e.inputs.map((p) => (
                  <em key={`i-${p.name}`} className={`chip ft-${p.frame_type}`}>
                    ▸{p.name}
                  </em>
                ))}
                {e.outputs.map((p) => (
                  <em key={`o-${p.name}`} className={`chip ft-${p.frame_type}`}>
                    {p.name}▸
                  </em>
                ))}
              </span>
            </button>
          </li>
        ))}
        {shown.length === 0 && <li className="none">No type matches “{query}”.</li>}
      </ul>
    </nav>
  );
}
