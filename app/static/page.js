// The page at /: draw or drop, send to the service's own REST routes, show what comes back.
"use strict";

const $ = (selector) => document.querySelector(selector);
const pad = $("#pad");
const pen = pad.getContext("2d");
let lastFile = null;

function clearPad() {
  pen.fillStyle = "#fff";
  pen.fillRect(0, 0, pad.width, pad.height);
}

// Drawing: pointer events cover the mouse, touch and pens alike.
function padPoint(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * pad.width / box.width, (event.clientY - box.top) * pad.height / box.height];
}

pad.addEventListener("pointerdown", (event) => {
  pad.setPointerCapture(event.pointerId);
  pen.lineWidth = 20;
  pen.lineCap = pen.lineJoin = "round";
  pen.strokeStyle = "#000";
  pen.beginPath();
  pen.moveTo(...padPoint(event));
  pen.lineTo(...padPoint(event));
  pen.stroke();
});
pad.addEventListener("pointermove", (event) => {
  if (!pad.hasPointerCapture(event.pointerId)) return;
  pen.lineTo(...padPoint(event));
  pen.stroke();
});
pad.addEventListener("pointerup", (event) => pad.releasePointerCapture(event.pointerId));
pad.addEventListener("keydown", (event) => {
  if (event.key === "Enter") predictDrawing();
  if (event.key === "Escape" || event.key === "Delete") clearPad();
});

function drawing() {
  return new Promise((resolve) => pad.toBlob(resolve, "image/png"));
}

// Talking to the service.
async function send(path, form) {
  const headers = {};
  const key = $("#api-key").value.trim();
  if (key) headers["X-API-Key"] = key;
  $("#error").hidden = true;
  let response;
  try {
    response = await fetch(path, { method: "POST", body: form, headers });
  } catch (failure) {
    showError({ detail: `the service could not be reached (${failure.message})`, code: "network_error" });
    return null;
  }
  const body = await response.json().catch(() => ({ detail: `HTTP ${response.status}`, code: "http_error" }));
  if (!response.ok) {
    showError(body, response.status);
    return null;
  }
  return body;
}

const READABLE = {
  no_digit_found: "No digit found",
  corrupt_image: "That image could not be read",
  unsupported_media_type: "That file is not an image",
  image_too_large: "That image is too large",
  payload_too_large: "That file is too large",
  unauthorized: "The service needs an API key (open “API key” above)",
  overloaded: "The service is busy; try again in a moment",
  not_ready: "The service is starting up; try again in a moment",
  number_out_of_range: "That number is out of range",
  invalid_number: "That is not a whole number",
};

function showError(body, status) {
  const box = $("#error");
  const code = body.code || "error";
  box.textContent = "";
  const title = document.createElement("strong");
  title.textContent = READABLE[code] || `Error ${status || ""}`.trim();
  const detail = document.createElement("p");
  detail.textContent = `${body.detail || body.error || ""} (${code})`;
  box.append(title, detail);
  box.dataset.code = code;
  box.hidden = false;
  $("#answer").textContent = "";
  $("#bars").textContent = "";
}

const percent = (p) => `${(100 * p).toFixed(1)}%`;

function showDigit(prediction) {
  const answer = $("#answer");
  answer.innerHTML = "";
  const label = document.createElement("strong");
  label.textContent = prediction.label;
  answer.append("Read: ", label, ` (${percent(prediction.probability)})`);
  const bars = $("#bars");
  bars.textContent = "";
  prediction.probabilities.forEach((p, digit) => {
    const item = document.createElement("li");
    if (digit === prediction.label) item.className = "best";
    const meter = document.createElement("meter");
    meter.min = 0; meter.max = 1; meter.value = p;
    meter.setAttribute("aria-label", `digit ${digit}`);
    const name = document.createElement("span");
    name.textContent = digit;
    const value = document.createElement("span");
    value.textContent = percent(p);
    item.append(name, meter, value);
    bars.append(item);
  });
}

function showStrip(body) {
  const answer = $("#answer");
  answer.innerHTML = "";
  const digits = document.createElement("strong");
  digits.textContent = body.digits.map((d) => d.label).join("");
  answer.append("Digits read: ", digits,
    document.createElement("br"),
    `Contains a 4: ${body.contains_4 ? "yes" : "no"} (P = ${body.probability.toFixed(3)})`);
  $("#bars").textContent = "";
  const boxes = $("#boxes");
  boxes.textContent = "";
  for (const digit of body.digits) {
    const [left, top, right, bottom] = digit.box;
    const box = document.createElement("div");
    Object.assign(box.style, { left: `${100 * left}%`, top: `${100 * top}%`, width: `${100 * (right - left)}%`,
                               height: `${100 * (bottom - top)}%` });
    const label = document.createElement("span");
    label.textContent = digit.label;
    box.append(label);
    boxes.append(box);
  }
}

async function predictDrawing() {
  const form = new FormData();
  form.append("files", await drawing(), "drawing.png");
  const body = await send("/predict/digit", form);
  if (body) showDigit(body.predictions[0]);
}

async function predictFile(file) {
  lastFile = file;
  const kind = document.querySelector("input[name=kind]:checked").value;
  const view = $("#strip-view");
  view.hidden = kind !== "strip";
  $("#boxes").textContent = "";
  const form = new FormData();
  if (kind === "strip") {
    $("#strip-image").src = URL.createObjectURL(file);
    form.append("strip", file, file.name);
    const body = await send("/predict/sequence", form);
    if (body) showStrip(body);
  } else {
    form.append("files", file, file.name);
    const body = await send("/predict/digit", form);
    if (body) showDigit(body.predictions[0]);
  }
}

$("#predict-drawing").addEventListener("click", predictDrawing);
$("#clear-drawing").addEventListener("click", clearPad);
$("#file").addEventListener("change", (event) => {
  if (event.target.files.length) predictFile(event.target.files[0]);
});

const drop = $("#drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  if (event.dataTransfer.files.length) predictFile(event.dataTransfer.files[0]);
});

$("#sum-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const source = document.querySelector("input[name=sum-source]:checked").value;
  if (source === "file" && !lastFile) {
    showError({ detail: "choose or drop an image above first", code: "no_image" });
    return;
  }
  const form = new FormData();
  form.append("file", source === "file" ? lastFile : await drawing(), source === "file" ? lastFile.name : "drawing.png");
  form.append("number", $("#number").value);
  const body = await send("/predict/digit-sum", form);
  if (body) {
    $("#sum-answer").textContent = `${body.digit} (${percent(body.probability)}) + ${body.number} = ${body.sum}`;
  }
});

clearPad();
