// A modal dialog (the browser's own <dialog>, shown with showModal: focus kept inside, Escape
// closes), which a busy caller can keep open: while `busy`, Escape is refused; if the browser
// closes it anyway (a second Escape), `onClose` still runs, so the caller's state follows.
import { useEffect, useRef, type ReactNode } from "react";

export function Modal({
  className,
  labelledBy,
  busy,
  onClose,
  children,
}: {
  className: string;
  labelledBy: string;
  busy: boolean;
  onClose: () => void;
  children: ReactNode;
}) {
  const dialog = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = dialog.current;
    if (d && !d.open) d.showModal();
  }, []);
  return (
    <dialog
      ref={dialog}
      className={`dialog ${className}`}
      aria-labelledby={labelledBy}
      onCancel={(e) => {
        e.preventDefault();
        if (!busy) onClose();
      }}
      onClose={onClose}
    >
      {children}
    </dialog>
  );
}
