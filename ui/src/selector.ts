// The label-selector editor: a text field that completes label names and values
// (LabelNames, LabelValues) and shows the server's error under it.

export interface Completions {
  names(): Promise<string[]>;
  values(name: string): Promise<string[]>;
}

/** What is being typed at the cursor: a label name, or a value of `label`. */
export type CompletionContext =
  | { kind: "name"; prefix: string; from: number }
  | { kind: "value"; label: string; prefix: string; from: number };

/** The completion context at `cursor` in `text`, if any. */
export function contextAt(text: string, cursor: number): CompletionContext | undefined {
  const before = text.slice(0, cursor);
  const value = /([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)$/.exec(before);
  if (value) return { kind: "value", label: value[1], prefix: value[3], from: cursor - value[3].length };
  const name = /[{,]\s*([a-zA-Z_][a-zA-Z0-9_]*)?$/.exec(before);
  if (name) {
    const prefix = name[1] ?? "";
    return { kind: "name", prefix, from: cursor - prefix.length };
  }
  return undefined;
}

export class SelectorEditor {
  readonly input: HTMLInputElement;
  private readonly list: HTMLUListElement;
  private readonly error: HTMLDivElement;
  private items: string[] = [];
  private active = 0;
  private context: CompletionContext | undefined;
  private request = 0;

  constructor(
    container: HTMLElement,
    private readonly completions: Completions,
    private readonly onSubmit: (selector: string) => void,
    testId: string,
  ) {
    container.classList.add("selector-editor");
    this.input = document.createElement("input");
    this.input.type = "text";
    this.input.spellcheck = false;
    this.input.placeholder = '{service_name="my-service"}';
    this.input.dataset.testid = testId;
    this.list = document.createElement("ul");
    this.list.className = "completions";
    this.list.hidden = true;
    this.error = document.createElement("div");
    this.error.className = "inline-error";
    this.error.dataset.testid = `${testId}-error`;
    this.error.hidden = true;
    container.append(this.input, this.list, this.error);

    this.input.addEventListener("input", () => void this.suggest());
    this.input.addEventListener("focus", () => void this.suggest());
    this.input.addEventListener("blur", () => setTimeout(() => (this.list.hidden = true), 150));
    this.input.addEventListener("keydown", (e) => this.onKey(e));
  }

  get value(): string {
    return this.input.value;
  }

  set value(text: string) {
    this.input.value = text;
  }

  /** Shows `message` under the field (or clears it). */
  setError(message: string | undefined): void {
    this.error.textContent = message ?? "";
    this.error.hidden = !message;
    this.input.classList.toggle("invalid", Boolean(message));
  }

  private onKey(e: KeyboardEvent): void {
    const open = !this.list.hidden && this.items.length > 0;
    if (open && (e.key === "ArrowDown" || e.key === "ArrowUp")) {
      e.preventDefault();
      this.active = (this.active + (e.key === "ArrowDown" ? 1 : this.items.length - 1)) % this.items.length;
      this.renderList();
    } else if (open && e.key === "Tab") {
      e.preventDefault();
      this.accept(this.items[this.active]);
    } else if (e.key === "Enter") {
      e.preventDefault();
      if (open && this.context && this.items[this.active] !== this.currentWord()) {
        this.accept(this.items[this.active]);
      } else {
        this.list.hidden = true;
        this.onSubmit(this.input.value);
      }
    } else if (e.key === "Escape") {
      this.list.hidden = true;
    }
  }

  private currentWord(): string {
    return this.context?.prefix ?? "";
  }

  private async suggest(): Promise<void> {
    const cursor = this.input.selectionStart ?? this.input.value.length;
    const context = contextAt(this.input.value, cursor);
    this.context = context;
    const request = ++this.request;
    if (!context) {
      this.list.hidden = true;
      return;
    }
    let candidates: string[];
    try {
      candidates = context.kind === "name" ? await this.completions.names() : await this.completions.values(context.label);
    } catch {
      candidates = [];
    }
    if (request !== this.request) return;
    const prefix = context.prefix.toLowerCase();
    this.items = candidates.filter((c) => c.toLowerCase().startsWith(prefix) && !c.startsWith("__")).slice(0, 50);
    this.active = 0;
    this.renderList();
  }

  private renderList(): void {
    this.list.replaceChildren(
      ...this.items.map((item, i) => {
        const li = document.createElement("li");
        li.textContent = item;
        li.classList.toggle("active", i === this.active);
        li.addEventListener("mousedown", (e) => {
          e.preventDefault();
          this.accept(item);
        });
        return li;
      }),
    );
    this.list.hidden = this.items.length === 0;
  }

  private accept(item: string): void {
    const context = this.context;
    if (!context) return;
    const text = this.input.value;
    const cursor = this.input.selectionStart ?? text.length;
    const insert = context.kind === "name" ? `${item}="` : `${item}"`;
    // Skip a closing quote already there after a value.
    const rest = context.kind === "value" && text[cursor] === '"' ? text.slice(cursor + 1) : text.slice(cursor);
    this.input.value = text.slice(0, context.from) + insert + rest;
    const position = context.from + insert.length;
    this.input.setSelectionRange(position, position);
    this.input.focus();
    void this.suggest();
  }
}
