// Geofences (admin): drawn and edited on the map, or typed in; which crossings
// raise an alert and which workers they watch. The API has no update: saving an
// edited geofence adds the new shape first, then removes the old one, so the site
// is never unwatched in between.
import { compareNames, h } from "./dom.js";
import { busy, confirmAction, explain, field, messageLine, replaceRows, say } from "./forms.js";
import { GeofenceEditor } from "./geofence-editor.js";

const CROSSINGS = [["exit", "a worker leaves it"], ["enter", "a worker enters it"]];

/** "43.61, 7.05" lines as a closed ring of [lon, lat]; throws an Error in words. */
export function parseCorners(text) {
  const corners = text.split("\n").map((line) => line.trim()).filter(Boolean).map((line, index) => {
    const numbers = line.split(/[,;\s]+/).filter(Boolean).map(Number);
    if (numbers.length !== 2 || numbers.some((n) => !Number.isFinite(n))) {
      throw new Error(`line ${index + 1} is not "latitude, longitude"`);
    }
    const [lat, lon] = numbers;
    if (Math.abs(lat) > 90 || Math.abs(lon) > 180) throw new Error(`line ${index + 1} is outside the world`);
    return [lon, lat];
  });
  const open = corners.length > 1 && corners[0].join() === corners.at(-1).join() ? corners.slice(0, -1) : corners;
  if (open.length < 3) throw new Error("a polygon needs at least 3 corners");
  return [...open, open[0]];
}

function cornersText(ring) {
  return ring.slice(0, -1).map(([lon, lat]) => `${lat}, ${lon}`).join("\n");
}

function shapeText(geometry) {
  if (geometry.type === "Circle") return `circle of ${Math.round(geometry.radius_m)} m`;
  return `polygon of ${geometry.coordinates[0].length - 1} corners`;
}

export class GeofencesSection {
  /** context: api, store, map (WorkerMap), reload(), showMap(), setView(view). */
  constructor(root, context) {
    this.root = root;
    this.context = context;
    this.api = context.api;
    this.fences = [];
    this.editing = null; // the geofence being changed; null for a new one
    this.editor = new GeofenceEditor(context.map.map, {
      changed: (geometry) => this._fill(geometry),
      drawn: (geometry) => {
        this._fill(geometry);
        this.context.setView("admin"); // phones: back from the map to the form
        say(this.formMessage, "Drawn. Drag the handles to adjust it, then save.", "ok");
        this.name.focus({ preventScroll: true });
      },
      cancelled: () => this.context.setView("admin"),
      done: () => {
        this.context.setView("admin");
        this.saveButton.focus({ preventScroll: false });
      },
    });
    this.message = messageLine("geofences-message");
    this.list = h("ul", { class: "rows", "data-testid": "geofences-list" });
    this.newButton = h("button", { type: "button", class: "primary", "data-testid": "geofence-new",
      text: "New geofence", onclick: () => this.openForm(null) });
    this.form = this._form();
    this.form.hidden = true;
    root.append(h("div", { class: "button-row" }, this.newButton), this.form, h("h3", { text: "Geofences" }),
      this.message, this.list);
  }

  _form() {
    this.formTitle = h("h3");
    this.formMessage = messageLine("geofence-form-message");
    this.name = h("input", { name: "name", required: true, maxlength: 100, autocomplete: "off",
      "data-testid": "geofence-name" });
    this.shapeChoice = h("fieldset", { class: "checks" }, h("legend", { text: "Shape" }),
      ["Polygon", "Circle"].map((type) => h("label", { class: "check" },
        h("input", { type: "radio", name: "shape", value: type, "data-testid": `geofence-shape-${type.toLowerCase()}`,
          onchange: () => this._shapeShown() }), ` ${type}`)));
    this.corners = h("textarea", { rows: 5, spellcheck: "false", "data-testid": "geofence-corners",
      onchange: () => this._typed() });
    this.lat = h("input", { type: "number", step: "any", min: -90, max: 90, "data-testid": "geofence-lat",
      onchange: () => this._typed() });
    this.lon = h("input", { type: "number", step: "any", min: -180, max: 180, "data-testid": "geofence-lon",
      onchange: () => this._typed() });
    this.radius = h("input", { type: "number", step: "any", min: 1, max: 100000, "data-testid": "geofence-radius",
      onchange: () => this._typed() });
    this.polygonFields = field("Corners: latitude, longitude, one per line", this.corners,
      "Drawn on the map, or typed here.");
    this.circleFields = h("div", { class: "stack" },
      h("div", { class: "two" }, field("Centre latitude", this.lat), field("Centre longitude", this.lon)),
      field("Radius (metres)", this.radius));
    this.crossings = h("fieldset", { class: "checks" }, h("legend", { text: "Alert when" }),
      CROSSINGS.map(([value, label]) => h("label", { class: "check" },
        h("input", { type: "checkbox", name: "alert_on", value, "data-testid": `geofence-on-${value}` }), ` ${label}`)));
    this.watched = h("fieldset", { class: "checks scroll" }, h("legend", { text: "Watches (none ticked: every worker)" }));
    const draw = h("button", { type: "button", class: "quiet", "data-testid": "geofence-draw", text: "Draw on the map",
      onclick: () => this._draw() });
    this.saveButton = h("button", { type: "submit", class: "primary", "data-testid": "geofence-save", text: "Save" });
    const cancel = h("button", { type: "button", class: "quiet", "data-testid": "geofence-cancel", text: "Cancel",
      onclick: () => this.closeForm() });
    return h("form", { class: "stack card", "data-testid": "geofence-form", novalidate: true,
      onsubmit: (event) => {
        event.preventDefault();
        this._save();
      } },
    this.formTitle, this.formMessage, field("Name", this.name), this.shapeChoice,
    h("div", { class: "button-row" }, draw), this.polygonFields, this.circleFields, this.crossings, this.watched,
    h("div", { class: "button-row" }, this.saveButton, cancel));
  }

  async load() {
    try {
      this.fences = (await this.api.get("api/v1/geofences")).items;
      this.fences.sort((a, b) => compareNames(a.name, b.name));
      replaceRows(this.list, this.fences.map((fence) => this._row(fence)));
      say(this.message, this.fences.length ? "" : "No geofence yet.", "ok");
    } catch (error) {
      say(this.message, explain(error, "load the geofences"));
    }
  }

  leave() {
    this.closeForm();
  }

  _row(fence) {
    const message = messageLine(`geofence-message-${fence.id}`);
    const remove = h("button", { type: "button", class: "quiet danger-text", "data-testid": `geofence-delete-${fence.id}`,
      text: "Delete", onclick: async () => {
        if (!(await confirmAction({
          title: `Delete ${fence.name}?`, text: "Crossing it no longer raises alerts.",
          confirmLabel: "Delete", danger: true, testid: "confirm-delete-geofence",
        }))) return;
        const done = await busy(remove, message, "delete the geofence", async () => {
          await this.api.delete(`api/v1/geofences/${fence.id}`);
          return true;
        });
        if (done) await this._changedOnServer();
      } });
    const watches = fence.devices.length ? `${fence.devices.length} worker(s)` : "every worker";
    const crossings = fence.alert_on.map((c) => (c === "exit" ? "leaving" : "entering")).join(" and ");
    return h("li", { class: "admin-row", "data-testid": `geofence-row-${fence.id}`, "data-name": fence.name },
      h("div", { class: "admin-row-head" },
        h("span", { class: "row-main" },
          h("span", { class: "row-title", text: fence.name }),
          h("span", { class: "muted", text: `${shapeText(fence.geometry)} · alerts on ${crossings} · watches ${watches}` }))),
      h("div", { class: "button-row" },
        h("button", { type: "button", class: "quiet", "data-testid": `geofence-show-${fence.id}`, text: "Show",
          onclick: () => {
            this.context.showMap();
            this.context.map.fitGeometry(fence.geometry);
          } }),
        h("button", { type: "button", class: "quiet", "data-testid": `geofence-edit-${fence.id}`, text: "Edit",
          onclick: () => this.openForm(fence) }),
        remove),
      message);
  }

  /** The form for a new geofence (null) or for changing one; its shape shows on the map with handles. */
  openForm(fence) {
    this.closeForm();
    this.editing = fence;
    this.form.hidden = false;
    this.newButton.hidden = true;
    this.formTitle.textContent = fence ? `Change ${fence.name}` : "New geofence";
    this.name.value = fence?.name ?? "";
    const type = fence?.geometry.type ?? "Polygon";
    this.shapeChoice.querySelector(`input[value="${type}"]`).checked = true;
    for (const box of this.crossings.querySelectorAll("input")) box.checked = (fence?.alert_on ?? ["exit"]).includes(box.value);
    this._watchList(fence?.devices ?? []);
    this._fill(fence?.geometry ?? null);
    this._shapeShown();
    if (fence) {
      this.context.map.hideGeofence(fence.id);
      this.editor.edit(fence.geometry, { fit: true });
      say(this.formMessage, "Drag the handles on the map, or change the numbers, then save.", "ok");
    } else {
      say(this.formMessage, "Name it, then draw it on the map (or type its corners).", "ok");
    }
    this.name.focus();
  }

  closeForm() {
    this.editor.stop();
    this.context.map.hideGeofence(null);
    this.editing = null;
    this.form.hidden = true;
    this.newButton.hidden = false;
  }

  _watchList(selected) {
    const devices = [...this.context.store.devices.values()].sort((a, b) => compareNames(a.name, b.name));
    const known = new Set(devices.map((d) => d.imei));
    const boxes = [...devices.map((d) => [d.imei, d.name]), ...selected.filter((imei) => !known.has(imei)).map((i) => [i, i])]
      .map(([imei, name]) => h("label", { class: "check" },
        h("input", { type: "checkbox", name: "devices", value: imei, checked: selected.includes(imei) }), ` ${name}`));
    this.watched.replaceChildren(this.watched.firstChild, ...boxes);
  }

  _shape() {
    return this.shapeChoice.querySelector("input:checked")?.value ?? "Polygon";
  }

  _shapeShown() {
    const circle = this._shape() === "Circle";
    this.circleFields.hidden = !circle;
    this.polygonFields.hidden = circle;
  }

  _draw() {
    this._shapeShown();
    this.context.showMap(); // phones: the map, with the drawing toolbar
    this.editor.draw(this._shape());
  }

  /** The fields show this geometry (or are emptied). */
  _fill(geometry) {
    this.corners.value = geometry?.type === "Polygon" ? cornersText(geometry.coordinates[0]) : "";
    this.lat.value = geometry?.type === "Circle" ? String(geometry.center[1]) : "";
    this.lon.value = geometry?.type === "Circle" ? String(geometry.center[0]) : "";
    this.radius.value = geometry?.type === "Circle" ? String(geometry.radius_m) : "";
    if (geometry) this.shapeChoice.querySelector(`input[value="${geometry.type}"]`).checked = true;
  }

  /** The geometry the fields describe; throws an Error in words. */
  _typedGeometry() {
    if (this._shape() === "Circle") {
      const [lat, lon, radius] = [this.lat, this.lon, this.radius].map((input) => Number(input.value));
      if (!this.lat.value || !this.lon.value || Math.abs(lat) > 90 || Math.abs(lon) > 180) {
        throw new Error("Give the centre's latitude (-90 to 90) and longitude (-180 to 180), or draw the circle.");
      }
      if (!(radius > 0 && radius <= 100_000)) throw new Error("The radius is between 1 m and 100 km.");
      return { type: "Circle", center: [lon, lat], radius_m: radius };
    }
    const holes = this.editor.type === "Polygon" ? this.editor.holes : [];
    try {
      return { type: "Polygon", coordinates: [parseCorners(this.corners.value), ...holes] };
    } catch (error) {
      throw new Error(`Corners: ${error.message}. Draw the polygon on the map, or type one corner per line.`);
    }
  }

  _typed() {
    try {
      this.editor.edit(this._typedGeometry());
      say(this.formMessage, "");
    } catch (error) {
      say(this.formMessage, error.message);
    }
  }

  async _save() {
    const name = this.name.value.trim();
    if (!name) return say(this.formMessage, "Give the geofence a name.");
    let geometry;
    try {
      geometry = this._typedGeometry();
    } catch (error) {
      return say(this.formMessage, error.message);
    }
    const alertOn = [...this.crossings.querySelectorAll("input:checked")].map((box) => box.value);
    if (alertOn.length === 0) return say(this.formMessage, "Tick when it raises an alert: leaving, entering, or both.");
    const devices = [...this.watched.querySelectorAll("input:checked")].map((box) => box.value);
    const replaced = this.editing;
    const created = await busy(this.saveButton, this.formMessage, "save the geofence",
      () => this.api.post("api/v1/geofences", { name, geometry, devices, alert_on: alertOn }));
    if (!created) return undefined;
    let warning = null;
    if (replaced) {
      try {
        await this.api.delete(`api/v1/geofences/${replaced.id}`);
      } catch (error) {
        warning = explain(error, `remove the old shape of ${replaced.name}`);
      }
    }
    this.closeForm();
    await this._changedOnServer();
    if (warning) say(this.message, `${created.name} saved as a new geofence. ${warning}`);
    else say(this.message, `${created.name} saved.`, "ok");
    return undefined;
  }

  async _changedOnServer() {
    await this.load();
    this.context.reload(); // the map's geofences
  }
}
