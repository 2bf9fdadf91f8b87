// The couplet page: POST the line to /api/couplet, show the answer and its alternatives with
// per-character pinyin and tone and a mark per rule. All text goes in through textContent.
"use strict";

const RULES = [
  ["length", "字数相同"],
  ["position", "同位不重字"],
  ["repetition", "重字相应"],
  ["tone", "平仄相对"],
];
const TONES = { ping: "平", ze: "仄" };

const $ = (id) => document.getElementById(id);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function charCell(info, role) {
  const cell = el("span", "cell " + role);
  cell.append(el("span", "py", info.pinyin || "\u00a0"));
  cell.append(el("span", "ch", info.char));
  const tone = TONES[info.tone];
  cell.append(el("span", "tone " + (info.tone || "none"), tone || "\u00a0"));
  return cell;
}

function grid(firstChars, chars) {
  const box = el("div", "grid");
  chars.forEach((info, i) => {
    const column = el("div", "pos");
    if (firstChars[i]) column.append(charCell(firstChars[i], "given"));
    column.append(charCell(info, "answer"));
    box.append(column);
  });
  return box;
}

function checkList(checks) {
  const list = el("ul", "checks");
  for (const [rule, label] of RULES) {
    if (!(rule in checks)) continue;
    const ok = Boolean(checks[rule]);
    const item = el("li", "check " + (ok ? "ok" : "bad"), (ok ? "✓ " : "✗ ") + label);
    item.dataset.rule = rule;
    item.title = ok ? "符合" : "不符合";
    list.append(item);
  }
  return list;
}

function card(alt, rank, firstChars) {
  const item = el("li", "alt" + (rank === 0 ? " best" : ""));
  const head = el("div", "alt-head");
  head.append(el("span", "rank", rank === 0 ? "最佳" : "候选 " + (rank + 1)));
  head.append(el("span", "alt-text", alt.text));
  if (alt.score !== null) head.append(el("span", "score", "得分 " + alt.score.toFixed(2)));
  item.append(head, grid(firstChars, alt.chars), checkList(alt.checks));
  return item;
}

function showError(message) {
  const box = $("error");
  box.textContent = "出错了：" + message;
  box.hidden = false;
}

function render(data, reverse) {
  $("answer-label").textContent = reverse ? "上联" : "下联";
  $("answer").textContent = data.second;
  const list = $("alternatives");
  list.replaceChildren(...data.alternatives.map((alt, i) => card(alt, i, data.first_chars)));
  $("result").hidden = false;
}

async function ask(first) {
  const reverse = $("reverse").checked;
  const button = $("go");
  $("error").hidden = true;
  button.disabled = true;
  button.textContent = "正在对…";
  try {
    const response = await fetch("/api/couplet", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ first, n: 5, reverse }),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      $("result").hidden = true;
      showError(typeof data.detail === "string" ? data.detail : "服务器返回 " + response.status);
      return;
    }
    render(data, reverse);
  } catch (err) {
    showError("连不上服务器（" + err.message + "）");
  } finally {
    button.disabled = false;
    button.textContent = reverse ? "对上联" : "对下联";
  }
}

function init() {
  $("ask").addEventListener("submit", (event) => {
    event.preventDefault();
    ask($("first").value);
  });
  $("reverse").addEventListener("change", () => {
    const reverse = $("reverse").checked;
    $("first-label").textContent = reverse ? "下联" : "上联";
    $("go").textContent = reverse ? "对上联" : "对下联";
  });
  for (const example of document.querySelectorAll(".example")) {
    example.addEventListener("click", () => {
      $("first").value = example.textContent;
      ask(example.textContent);
    });
  }
}

init();
