// Drawing and editing one geofence on the Leaflet map: a polygon corner by corner,
// or a circle by its centre and a point on its edge; then handles to drag (corners,
// the points between them to add one, a circle's centre and radius). Geometries are
// the API's: GeoJSON Polygon rings [lon, lat], or {"type": "Circle", center, radius_m}.
import "../vendor/leaflet/leaflet.js";
import { h } from "./dom.js";

const L = window.L;
const STYLE = { color: "#e65100", weight: 3, fillOpacity: 0.15, interactive: false };
const DIGITS = 1e6; // coordinates kept to 6 decimals: about 0.1 m

const round = (value) => Math.round(value * DIGITS) / DIGITS;
const wrapLon = (lon) => L.Util.wrapNum(lon, [-180, 180], true);
const toPosition = (latlng) => [round(wrapLon(latlng.lng)), round(latlng.lat)];

function handleIcon(kind) {
  return L.divIcon({ className: `edit-handle edit-handle-${kind}`, iconSize: kind === "mid" ? [12, 12] : [18, 18] });
}

export class GeofenceEditor {
  /**
   * hooks: changed(geometry) on every edit, drawn(geometry) when a drawing is finished, cancelled(),
   * done() when the user is through with the handles (phones: back to the form).
   */
  constructor(map, hooks) {
    this.map = map;
    this.hooks = hooks;
    this.layer = L.layerGroup();
    this.mode = null; // "draw" or "edit"
    this.type = null; // "Polygon" or "Circle"
    this.points = []; // polygon corners or [centre, edge] as LatLngs
    this.holes = []; // an edited polygon's holes, kept as they were
    this.radius = 0;
    this.toolbar = this._toolbar();
    this._onClick = (event) => this._click(event.latlng);
    this._onMove = (event) => this._preview(event.latlng);
    this._onKey = (event) => this._key(event);
  }

  get active() {
    return this.mode !== null;
  }

  /** Starts drawing a new shape of that type ("Polygon" or "Circle"). */
  draw(type) {
    this.stop();
    this.mode = "draw";
    this.type = type;
    this.points = [];
    this.holes = [];
    this.layer.addTo(this.map);
    this.toolbar.addTo(this.map);
    this.map.doubleClickZoom.disable();
    this.map.getContainer().classList.add("drawing");
    this.map.on("click", this._onClick);
    this.map.on("mousemove", this._onMove);
    document.addEventListener("keydown", this._onKey);
    this._render();
    this.toolbar.getContainer().querySelector("button")?.focus({ preventScroll: true });
  }

  /** Shows a geometry with handles to drag; `fit` frames it. */
  edit(geometry, { fit = false } = {}) {
    this._stopDrawing();
    this.mode = "edit";
    this.type = geometry.type;
    if (geometry.type === "Circle") {
      const centre = L.latLng(geometry.center[1], geometry.center[0]);
      this.radius = geometry.radius_m;
      this.points = [centre];
    } else {
      const [outer, ...holes] = geometry.coordinates;
      this.points = outer.slice(0, -1).map(([lon, lat]) => L.latLng(lat, lon));
      this.holes = holes;
    }
    this.layer.addTo(this.map);
    this.toolbar.addTo(this.map);
    this._render();
    if (fit) this.map.fitBounds(this.shape.getBounds(), { padding: [40, 40], maxZoom: 18 });
  }

  /** The shape being edited as the API takes it, or null while there is none yet. */
  geometry() {
    if (this.type === "Circle") {
      if (this.points.length === 0 || !(this.radius > 0)) return null;
      return { type: "Circle", center: toPosition(this.points[0]), radius_m: Math.round(this.radius * 10) / 10 };
    }
    if (this.points.length < 3) return null;
    const ring = this.points.map(toPosition);
    return { type: "Polygon", coordinates: [[...ring, ring[0]], ...this.holes] };
  }

  stop() {
    this._stopDrawing();
    this.mode = null;
    this.layer.clearLayers();
    this.layer.remove();
  }

  _stopDrawing() {
    this.map.off("click", this._onClick);
    this.map.off("mousemove", this._onMove);
    document.removeEventListener("keydown", this._onKey);
    this.map.doubleClickZoom.enable();
    this.map.getContainer().classList.remove("drawing");
    this.toolbar.remove();
  }

  // -- drawing ---------------------------------------------------------------------------

  _click(latlng) {
    if (this.type === "Circle") {
      if (this.points.length === 0) {
        this.points = [latlng];
      } else {
        this.radius = this.map.distance(this.points[0], latlng);
        this.finish();
        return;
      }
    } else {
      this.points.push(latlng);
    }
    this._render();
  }

  _preview(latlng) {
    if (this.type === "Circle" && this.points.length === 1) {
      this.radius = this.map.distance(this.points[0], latlng);
      this._render();
    }
  }

  _key(event) {
    if (event.target.closest?.("input, textarea, select")) return;
    if (event.key === "Escape") this.cancel();
    else if (event.key === "Enter") this.finish();
    else if (event.key === "Backspace") this.undo();
    else return;
    event.preventDefault();
  }

  undo() {
    if (this.type === "Circle") this.points = [];
    else this.points.pop();
    this.radius = this.type === "Circle" ? 0 : this.radius;
    this._render();
  }

  finish() {
    const geometry = this.geometry();
    if (!geometry) {
      this._hint(this.type === "Circle" ? "Click the centre, then a point on the edge." :
        "A geofence needs at least 3 corners.");
      return;
    }
    this.edit(geometry);
    this.hooks.drawn(geometry);
  }

  cancel() {
    this.stop();
    this.hooks.cancelled();
  }

  _toolbar() {
    const Toolbar = L.Control.extend({
      onAdd: () => {
        const drawing = this.mode === "draw";
        const element = h("div", { class: "leaflet-control draw-toolbar", "data-testid": "draw-toolbar",
          role: "toolbar", "aria-label": drawing ? "Drawing a geofence" : "Changing a geofence" },
        h("span", { class: "draw-hint", "data-testid": "draw-hint", "aria-live": "polite" }),
        drawing ? h("div", { class: "button-row" },
          h("button", { type: "button", class: "primary", "data-testid": "draw-finish", text: "Finish",
            onclick: () => this.finish() }),
          h("button", { type: "button", class: "quiet", "data-testid": "draw-undo", text: "Undo",
            onclick: () => this.undo() }),
          h("button", { type: "button", class: "quiet", "data-testid": "draw-cancel", text: "Cancel",
            onclick: () => this.cancel() }))
          : h("div", { class: "button-row" },
            h("button", { type: "button", class: "primary", "data-testid": "edit-done", text: "Back to the form",
              onclick: () => this.hooks.done() })));
        L.DomEvent.disableClickPropagation(element);
        return element;
      },
    });
    return new Toolbar({ position: "topleft" });
  }

  _hint(text) {
    const hint = this.toolbar.getContainer()?.querySelector(".draw-hint");
    if (hint) hint.textContent = text;
  }

  // -- the shape and its handles -----------------------------------------------------------

  _render() {
    this.layer.clearLayers();
    this.shape = null;
    if (this.type === "Circle") this._renderCircle();
    else this._renderPolygon();
    if (this.mode === "edit") {
      this._hint(this.type === "Circle" ? "Drag the centre to move the circle, the round handle to resize it."
        : "Drag a corner to move it, a small dot to add one; right-click or long-press a corner to remove it.");
    } else {
      const corners = this.points.length;
      this._hint(this.type === "Circle"
        ? (corners === 0 ? "Click the centre of the circle." : "Click a point on its edge.")
        : (corners < 3 ? `Click the map to add corners (${corners} of at least 3).`
          : `${corners} corners: click to add more, or Finish.`));
    }
  }

  _renderCircle() {
    if (this.points.length === 0) return;
    const centre = this.points[0];
    this._addShape(L.circle(centre, { ...STYLE, radius: Math.max(this.radius, 1) }));
    if (this.mode !== "edit") return;
    const edge = () => L.latLng(centre.lat, centre.lng + this.radius / (111_320 * Math.cos((centre.lat * Math.PI) / 180)));
    const centreHandle = this._handle(centre, "corner", "Centre of the circle: drag to move it");
    const radiusHandle = this._handle(edge(), "radius", "Edge of the circle: drag to change its radius");
    centreHandle.on("drag", (event) => {
      this.points = [event.target.getLatLng()];
      this.shape.setLatLng(this.points[0]);
      radiusHandle.setLatLng(L.latLng(this.points[0].lat, this.points[0].lng + (edge().lng - centre.lng)));
    });
    radiusHandle.on("drag", (event) => {
      this.radius = this.map.distance(this.points[0], event.target.getLatLng());
      this.shape.setRadius(this.radius);
    });
    for (const handle of [centreHandle, radiusHandle]) handle.on("dragend", () => this._changed());
  }

  _renderPolygon() {
    if (this.points.length === 0) return;
    const outline = this.points.length >= 3 ? L.polygon(this.points, STYLE) : L.polyline(this.points, STYLE);
    this._addShape(outline);
    if (this.mode === "draw") {
      this.points.forEach((point, index) => {
        const marker = L.circleMarker(point, { radius: 5, color: "#e65100", fillColor: "#fff", fillOpacity: 1,
          interactive: index === 0 && this.points.length >= 3 });
        if (index === 0) marker.on("click", (event) => {
          L.DomEvent.stopPropagation(event);
          this.finish(); // clicking the first corner closes the shape
        });
        marker.addTo(this.layer);
      });
      return;
    }
    this.points.forEach((point, index) => {
      const handle = this._handle(point, "corner", `Corner ${index + 1}: drag to move it, right-click to remove it`);
      handle.on("drag", (event) => {
        this.points[index] = event.target.getLatLng();
        this.shape.setLatLngs(this.points);
      });
      handle.on("dragend", () => {
        this._render();
        this._changed();
      });
      handle.on("contextmenu", () => {
        if (this.points.length <= 3) return; // a polygon keeps at least 3 corners
        this.points.splice(index, 1);
        this._render();
        this._changed();
      });
    });
    // Between each pair of corners, a smaller handle: dragging it adds a corner there.
    this.points.forEach((point, index) => {
      const next = this.points[(index + 1) % this.points.length];
      const middle = L.latLng((point.lat + next.lat) / 2, (point.lng + next.lng) / 2);
      const handle = this._handle(middle, "mid", "Drag to add a corner here");
      handle.on("dragstart", () => this.points.splice(index + 1, 0, handle.getLatLng()));
      handle.on("drag", (event) => {
        this.points[index + 1] = event.target.getLatLng();
        this.shape.setLatLngs(this.points);
      });
      handle.on("dragend", () => {
        this._render();
        this._changed();
      });
    });
  }

  _addShape(shape) {
    this.shape = shape;
    shape.on("add", () => shape.getElement()?.setAttribute("data-testid", "geofence-edited"));
    shape.addTo(this.layer);
  }

  _handle(latlng, kind, title) {
    const marker = L.marker(latlng, { icon: handleIcon(kind), draggable: true, title, alt: title, keyboard: true,
      zIndexOffset: kind === "mid" ? 900 : 1000 });
    marker.on("add", () => marker.getElement()?.setAttribute("data-testid", `edit-handle-${kind}`));
    return marker.addTo(this.layer);
  }

  _changed() {
    const geometry = this.geometry();
    if (geometry) this.hooks.changed(geometry);
  }
}
