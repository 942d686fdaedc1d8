// Live content of a node, from the shared preview route (WS /api/preview): many open
// dashboards cost the server one encode per port.
import { useEffect, useState } from "react";
import { socket } from "./api";

interface Level {
  peak_dbfs: number;
  rms_dbfs: number;
}

type Shown =
  | { kind: "none" }
  | { kind: "image"; url: string; frame: number }
  | { kind: "levels"; channels: Level[] }
  | { kind: "data"; text: string; frame: number }
  | { kind: "ended"; message: string };

/** The live preview of `port` (`processor.port`): an image, level meters, or the last data frame. */
export function Preview({ port, frameType }: { port: string; frameType: string }) {
  const [shown, setShown] = useState<Shown>({ kind: "none" });
  useEffect(() => {
    const fps = frameType === "audio" ? 20 : 5;
    const query = new URLSearchParams({ port, fps: String(fps) });
    if (frameType === "video") query.set("width", "200");
    const ws = socket(`/api/preview?${query}`);
    ws.binaryType = "blob";
    let frame = 0;
    let url: string | null = null;
    ws.onmessage = (m) => {
      if (typeof m.data !== "string") {
        const next = URL.createObjectURL(m.data as Blob);
        if (url) URL.revokeObjectURL(url);
        url = next;
        setShown({ kind: "image", url: next, frame });
        return;
      }
      const msg = JSON.parse(m.data);
      if (msg.type === "frame") frame = msg.frame_number;
      else if (msg.type === "levels") setShown({ kind: "levels", channels: msg.channels });
      else if (msg.type === "data")
        setShown({ kind: "data", text: JSON.stringify(msg.payload), frame: msg.frame_number });
      else if (msg.type === "end") setShown({ kind: "ended", message: msg.message });
    };
    return () => {
      ws.close();
      if (url) URL.revokeObjectURL(url);
    };
  }, [port, frameType]);

  switch (shown.kind) {
    case "none":
      return <div className="preview empty">waiting for frames…</div>;
    case "ended":
      return <div className="preview empty">{shown.message}</div>;
    case "image":
      return (
        <img className="preview" src={shown.url} alt={`live preview of ${port}, frame ${shown.frame}`} data-frame={shown.frame} />
      );
    case "levels":
      return (
        <div className="preview meters" role="img" aria-label={`levels of ${port}`}>
          {shown.channels.map((c, i) => (
            <div className="meter" key={i} title={`peak ${c.peak_dbfs.toFixed(1)} dBFS, RMS ${c.rms_dbfs.toFixed(1)} dBFS`}>
              <div className="rms" style={{ width: `${Math.max(0, 100 + c.rms_dbfs * (100 / 60))}%` }} />
              <div className="peak" style={{ left: `${Math.max(0, 100 + c.peak_dbfs * (100 / 60))}%` }} />
            </div>
          ))}
        </div>
      );
    case "data":
      return (
        <pre className="preview data" data-frame={shown.frame}>
          {shown.text.length > 240 ? `${shown.text.slice(0, 240)}…` : shown.text}
        </pre>
      );
  }
}
