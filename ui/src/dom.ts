// Small DOM helpers shared by the views.

type Attributes = Record<string, string | boolean | undefined>;

/** An element with attributes (`data-*`, `class`, booleans as presence) and children. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Attributes = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === false) continue;
    element.setAttribute(name, value === true ? "" : value);
  }
  element.append(...children);
  return element;
}

/** A `<select>` of `(value, label)` options with `selected` chosen. */
export function select(testId: string, options: [string, string][], selected: string): HTMLSelectElement {
  const element = h("select", { "data-testid": testId });
  setOptions(element, options, selected);
  return element;
}

export function setOptions(element: HTMLSelectElement, options: [string, string][], selected: string): void {
  element.replaceChildren(...options.map(([value, label]) => h("option", { value, selected: value === selected }, label)));
  element.value = selected;
}

/** A message box for errors and empty states. */
export function notice(kind: "error" | "empty" | "loading", testId: string): HTMLDivElement {
  const element = h("div", { class: `notice ${kind}`, "data-testid": testId });
  element.hidden = true;
  return element;
}

export function show(element: HTMLElement, text: string | undefined): void {
  element.textContent = text ?? "";
  element.hidden = !text;
}
