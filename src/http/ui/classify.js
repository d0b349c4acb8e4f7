// The page to try the service: images in (drop, paste, file picker), `POST /classify` per
// image, the top-5 classes as bars, the stage timings, or the API's error as it words it.
"use strict";

const results = document.getElementById("results");

const chooser = document.getElementById("version");
/** The served versions (`/v1/models`), and the query that names the chosen one ("" for one). */
let served = [];
let route = "";

async function showModels() {
  const answer = await getJson("/v1/models");
  if (!answer.ok) {
    const line = document.getElementById("model");
    line.textContent = "Model details unavailable: " + describeError(answer.status, answer.body);
    return;
  }
  served = answer.body.models;
  if (served.length > 1) {
    // Several models or versions: a choice, starting at the first model's newest version (the
    // list is ordered by name, then version).
    chooser.replaceChildren(
      ...served.map((m, i) => {
        const option = el("option", "", m.name + " · version " + m.version);
        option.value = String(i);
        return option;
      }),
    );
    chooser.value = String(served.filter((m) => m.name === served[0].name).length - 1);
    document.getElementById("choose").hidden = false;
  }
  showModel();
}

function showModel() {
  const line = document.getElementById("model");
  const model = served[Number(chooser.value || 0)];
  route = served.length > 1
    ? "&model=" + encodeURIComponent(model.name) + "&version=" + model.version
    : "";
  line.replaceChildren(
    el("strong", "", model.variant ? "RepVGG-" + model.variant : "custom RepVGG"),
    " · " + model.precision + " · " + model.num_classes + " classes · " + model.source,
  );
  if (model.checkpoint_sha256) {
    const sha = el("code", "sha", "sha256 " + model.checkpoint_sha256.slice(0, 12) + "…");
    sha.title = model.checkpoint_sha256;
    line.append(" · ", sha);
  }
  document.getElementById("demo-warning").hidden = !model.demo;
}

/** One result card: the image, its name, and where its answer goes. */
function card(file) {
  const item = el("li", "result");
  const preview = el("img", "preview");
  preview.alt = file.name || "pasted image";
  const url = URL.createObjectURL(file);
  preview.addEventListener("load", () => URL.revokeObjectURL(url), { once: true });
  preview.addEventListener("error", () => {
    URL.revokeObjectURL(url);
    preview.replaceWith(el("div", "preview none", "no preview"));
  }, { once: true });
  preview.src = url;
  const out = el("div", "answer");
  out.append(el("h3", "name", file.name || "pasted image"), el("p", "pending", "Classifying…"));
  item.append(preview, out);
  results.prepend(item);
  return out;
}

function showPredictions(out, body) {
  const list = el("ol", "predictions");
  for (const p of body.predictions) {
    const row = el("li", "prediction");
    const percent = (100 * p.probability).toFixed(1) + " %";
    const bar = el("span", "bar");
    const fill = el("span", "fill");
    fill.style.width = Math.max(0.5, 100 * p.probability) + "%";
    bar.append(fill);
    bar.setAttribute("role", "img");
    bar.setAttribute("aria-label", percent);
    row.append(el("span", "label", p.label), bar, el("span", "probability", percent));
    list.append(row);
  }
  const t = body.timings_ms;
  const timings = el(
    "p",
    "timings",
    "decode " + ms(t.preprocess) + " · queue " + ms(t.queue) + " · inference " +
      ms(t.inference) + " · total " + ms(t.total),
  );
  out.querySelector(".pending").replaceWith(list, timings);
}

function showError(out, status, body) {
  const message = el("p", "error", describeError(status, body));
  message.setAttribute("role", "alert");
  out.querySelector(".pending").replaceWith(message);
}

async function classify(file) {
  const out = card(file);
  try {
    const response = await fetch("/classify?top_k=5" + route, {
      method: "POST",
      headers: { ...authHeaders(), "Content-Type": "application/octet-stream" },
      body: file,
    });
    const body = await response.json().catch(() => null);
    if (response.ok && body && body.predictions) {
      showPredictions(out, body);
    } else {
      showError(out, response.status, body);
    }
  } catch (e) {
    showError(out, 0, { error_type: "network", error: String(e) });
  }
}

function classifyAll(files) {
  for (const file of files) classify(file);
}

const picker = document.getElementById("file");
picker.addEventListener("change", () => {
  classifyAll(picker.files);
  picker.value = "";
});

const drop = document.getElementById("drop");
drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  classifyAll(event.dataTransfer.files);
});
document.addEventListener("paste", (event) => {
  const files = [...event.clipboardData.files];
  if (files.length) {
    event.preventDefault();
    classifyAll(files);
  }
});

chooser.addEventListener("change", showModel);
keepKey(showModels);
showModels();
