// The live map: a marker per worker coloured by state, geofences, a track.
// Tiles are optional: without them the map is a plain background with a scale
// and a coordinates readout, and everything else works the same.
// A big tenant's workers are dots drawn on one canvas (Leaflet's Canvas renderer): 10,000
// marker elements, each with its name, would take seconds to lay out and every frame after.
import "../vendor/leaflet/leaflet.js";
import { KIND_LABELS, STATE_LABELS, ago, clock, compareNames, coords, h } from "./dom.js";

const L = window.L;
const WORLD = { center: [20, 0], zoom: 2 };
const FOCUS_ZOOM = 17;
const LABELS_ZOOM = 15;
const LABEL_OFFSET = 16; // px from a marker's centre to its name: clear of the 26 px icon
const MARKER_HALF = 15; // px: half a marker icon with its border, as an obstacle to names
const LABEL_GAP = 3; // px kept free around a name
const LABEL_PRIORITY = { alert: 0, low_battery: 1, offline: 2, ok: 3 }; // whose name is placed first
const DOM_MARKERS_UP_TO = 500; // workers with a position; more are drawn on the canvas
// The canvas dots: the colours of app.css's markers (--ok, --alert...); a worker in alert is bigger
// with a dark ring, and drawn above the others.
const DOT_COLOURS = { ok: "#2e7d32", alert: "#d32f2f", offline: "#78848f", low_battery: "#f29900" };
const DOT_STYLE = { radius: 6, weight: 2, color: "#ffffff", opacity: 1, fillOpacity: 1 };
const ALERT_DOT_STYLE = { radius: 10, weight: 4, color: "#7f0000" };

export class WorkerMap {
  /** actions: showTrack(imei), showAlerts(imei), showCommands(imei). */
  constructor(element, store, config, actions) {
    this.element = element;
    this.store = store;
    this.actions = actions;
    this.map = L.map(element, { worldCopyJump: true, zoomSnap: 0.5 }).setView(WORLD.center, WORLD.zoom);
    this.markers = new Map();
    this.canvas = L.canvas({ padding: 0.5 });
    this.drawnOnCanvas = false; // the markers are canvas dots (a big tenant), not elements
    this.workers = L.layerGroup().addTo(this.map);
    this.geofences = L.layerGroup().addTo(this.map);
    this.track = L.layerGroup().addTo(this.map);
    this.popup = L.popup({ maxWidth: 300, autoPanPadding: [16, 16] });
    this.openImei = null;
    this.fitted = false;
    this.fences = [];
    this.hiddenFence = null;
    // data-idle: no pan or zoom animation under way (tests wait for it before screenshots)
    this.map.on("movestart zoomstart", () => { element.dataset.idle = "false"; });
    this.map.on("moveend zoomend", () => { element.dataset.idle = "true"; });
    element.dataset.idle = "true";
    // Names beside the markers once zoomed in enough, placed again whenever the view changes.
    this.labelsPending = false;
    this.map.on("zoomend moveend resize overlayadd", () => this._scheduleLabels());
    this.map.on("zoomend", () => {
      if (this.drawnOnCanvas) this._renderAll(); // moves too small to show before may show now
    });
    this.map.on("popupclose", (event) => {
      if (event.popup === this.popup) this.openImei = null;
    });

    this.tileNote = this._control("topright", "tile-note", "tiles-unavailable");
    this.tileNote.hidden = true;
    if (config.tile_url) {
      const tiles = L.tileLayer(config.tile_url, { maxZoom: 19, attribution: config.tile_attribution ?? "" });
      tiles.on("tileerror", () => this._tilesReachable(false));
      tiles.on("tileload", () => this._tilesReachable(true));
      tiles.addTo(this.map);
    } else {
      this._tilesReachable(false, "No map tiles configured: plain background");
    }
    L.control.scale({ imperial: false, maxWidth: 160 }).addTo(this.map);
    this._keepScaleAboveAttribution();
    this._coordinatesReadout();
    L.control.layers(null, { Workers: this.workers, Geofences: this.geofences, Track: this.track }).addTo(this.map);
  }

  _control(position, className, testid) {
    const Control = L.Control.extend({
      onAdd: () => {
        const el = h("div", { class: `leaflet-control ${className}`, "data-testid": testid });
        L.DomEvent.disableClickPropagation(el);
        return el;
      },
    });
    const control = new Control({ position });
    control.addTo(this.map);
    return control.getContainer();
  }

  _tilesReachable(reachable, message = "Map tiles unavailable: plain background") {
    this.tileNote.textContent = message;
    this.tileNote.hidden = reachable;
    this.element.classList.toggle("no-tiles", !reachable);
  }

  // The attribution runs along the bottom edge and can be wide (OpenStreetMap's credit): on a
  // narrow map it would reach the scale bar, so the bottom-left corner sits just above it.
  _keepScaleAboveAttribution() {
    const attribution = this.map.attributionControl?.getContainer();
    if (!attribution) return;
    const follow = () => this.element.style.setProperty("--attribution-height", `${attribution.offsetHeight}px`);
    new ResizeObserver(follow).observe(attribution);
    follow();
  }

  // Popups keep clear of the controls in the map's corners (the tiles note, layers, zoom,
  // scale, attribution): Leaflet pans a popup inside these paddings, its top (and close
  // button) first when it cannot fit whole.
  _padPopup() {
    const tallest = (selector) => Math.max(0, ...[...this.element.querySelectorAll(selector)].map((c) => c.offsetHeight));
    this.popup.options.autoPanPaddingTopLeft = L.point(16, tallest(".leaflet-top") + 8);
    this.popup.options.autoPanPaddingBottomRight = L.point(16, tallest(".leaflet-bottom") + 8);
  }

  _coordinatesReadout() {
    const readout = this._control("bottomright", "map-coords", "map-coords");
    const show = (latlng) => {
      readout.textContent = coords(latlng.lat, L.Util.wrapNum(latlng.lng, [-180, 180], true));
    };
    this.map.on("mousemove", (event) => show(event.latlng));
    this.map.on("move mouseout", () => show(this.map.getCenter()));
    show(this.map.getCenter());
  }

  // Leaflet starts an animated move on the next frame; say so now (moveend always follows).
  _moving() {
    this.element.dataset.idle = "false";
  }

  /** The map became visible again (phone views): Leaflet has to measure it. */
  resized() {
    this.map.invalidateSize();
  }

  /**
   * Markers follow the store. changed: the IMEIs of the devices that changed since the last call,
   * or null when any may have (then every marker is checked, and markers come and go).
   */
  render(changed = null) {
    if (changed === null || !this._renderChanged(changed)) this._renderAll();
    if (this.openImei && (changed === null || changed.has(this.openImei))) this._refreshDetails();
    this._scheduleLabels();
  }

  // Only the changed devices' markers, when each already has one and none lost its position.
  _renderChanged(changed) {
    const updates = [];
    for (const imei of changed) {
      const device = this.store.devices.get(imei);
      const marker = this.markers.get(imei);
      if (!marker || !device?.last_position) return false;
      updates.push([marker, device.last_position]);
    }
    for (const [marker, position] of updates) this._place(marker, position);
    return true;
  }

  _renderAll() {
    const positioned = [...this.store.devices.values()].filter((device) => device.last_position);
    const canvas = positioned.length > DOM_MARKERS_UP_TO;
    if (canvas !== this.drawnOnCanvas) { // the tenant crossed the line: draw every marker the other way
      this.workers.clearLayers();
      this.markers.clear();
      this.drawnOnCanvas = canvas;
    }
    const seen = new Set();
    for (const device of positioned) {
      seen.add(device.imei);
      const marker = this.markers.get(device.imei);
      if (marker) this._place(marker, device.last_position);
      else this._addMarker(device);
    }
    for (const [imei, marker] of this.markers) {
      if (!seen.has(imei)) {
        this.workers.removeLayer(marker);
        this.markers.delete(imei);
      }
    }
    this.element.dataset.markers = String(this.markers.size);
    this.element.dataset.renderer = canvas ? "canvas" : "elements";
    if (!this.fitted && seen.size > 0) {
      this.fitted = true;
      const bounds = L.latLngBounds([...this.markers.values()].map((m) => m.getLatLng()));
      this._moving();
      this.map.fitBounds(bounds, { padding: [40, 40], maxZoom: FOCUS_ZOOM });
    }
  }

  _place(marker, position) {
    const at = marker.getLatLng();
    if ((at.lat !== position.lat || at.lng !== position.lon) && this._showsMove(at, position)) {
      marker.setLatLng([position.lat, position.lon]);
    }
    this._decorate(marker);
  }

  // A canvas dot is moved (and that part of the canvas redrawn) only when the move shows, by a
  // pixel or more at this zoom: a walking worker's few metres do not, over a whole fleet. Zooming
  // in places every dot again (see the constructor).
  _showsMove(at, position) {
    if (!this.drawnOnCanvas) return true;
    const from = this.map.latLngToLayerPoint(at);
    const to = this.map.latLngToLayerPoint([position.lat, position.lon]);
    return Math.abs(from.x - to.x) >= 1 || Math.abs(from.y - to.y) >= 1;
  }

  _addMarker(device) {
    const position = device.last_position;
    const marker = this.drawnOnCanvas
      ? L.circleMarker([position.lat, position.lon], { ...DOT_STYLE, renderer: this.canvas, className: "worker-dot" })
      : L.marker([position.lat, position.lon], {
        icon: L.divIcon({ className: "worker-marker", iconSize: [26, 26] }),
        riseOnHover: true,
      });
    marker.imei = device.imei;
    if (this.drawnOnCanvas) {
      // No room for 10,000 names: a dot shows its worker's name while the pointer is on it.
      marker.bindTooltip(device.name, { direction: "right", offset: [10, 0], className: "worker-label label-hover" });
    } else {
      marker.bindTooltip(device.name, {
        permanent: true, direction: "right", offset: [LABEL_OFFSET, 0], className: "worker-label" });
      marker.on("add", () => this._decorate(marker));
      // A name left out for lack of room (or below LABELS_ZOOM) shows while the pointer is on its marker.
      marker.on("mouseover", () => {
        marker.getTooltip().getElement()?.classList.add("label-hover");
        marker.getTooltip().update(); // measured while hidden: place it again now that it shows
      });
      marker.on("mouseout", () => marker.getTooltip().getElement()?.classList.remove("label-hover"));
    }
    marker.on("click", () => this.openDetails(marker.imei));
    this.markers.set(device.imei, marker);
    marker.addTo(this.workers);
    this._decorate(marker);
  }

  // Once per frame at most: positions arrive in bursts.
  _scheduleLabels() {
    if (this.labelsPending) return;
    this.labelsPending = true;
    requestAnimationFrame(() => {
      this.labelsPending = false;
      this._placeLabels();
    });
  }

  // Each name goes right of its marker, else left, where it overlaps no other name, no marker
  // and no map control and stays inside the map; else it is left out (hover shows it). Workers
  // in alert are named first. Sizes are all read before any label is moved (one layout).
  _placeLabels() {
    const show = this.map.getZoom() >= LABELS_ZOOM && !this.drawnOnCanvas;
    this.element.classList.toggle("show-labels", show);
    if (!show) return;
    const size = this.map.getSize();
    const origin = this.element.getBoundingClientRect();
    const taken = [...this.element.querySelectorAll(".leaflet-control")].map((control) => control.getBoundingClientRect())
      .filter((r) => r.width > 0) // a hidden control takes no room
      .map((r) => ({ left: r.left - origin.left, top: r.top - origin.top, right: r.right - origin.left, bottom: r.bottom - origin.top }));
    const labels = [];
    for (const marker of this.markers.values()) {
      const el = marker.getTooltip()?.getElement();
      if (!el?.isConnected) continue;
      el.classList.remove("label-hidden");
      const at = this.map.latLngToContainerPoint(marker.getLatLng());
      const device = this.store.devices.get(marker.imei);
      const icon = { left: at.x - MARKER_HALF, top: at.y - MARKER_HALF, right: at.x + MARKER_HALF, bottom: at.y + MARKER_HALF, icon: true };
      taken.push(icon);
      labels.push({ marker, el, at, icon, rank: device ? LABEL_PRIORITY[this.store.stateOf(device)] : 9, name: device?.name ?? "" });
    }
    for (const label of labels) [label.width, label.height] = [label.el.offsetWidth, label.el.offsetHeight];
    labels.sort((a, b) => a.rank - b.rank || compareNames(a.name, b.name));

    const inside = (r) => r.left >= 0 && r.top >= 0 && r.right <= size.x && r.bottom <= size.y;
    const apart = (a, b, gap) => a.right + gap <= b.left || b.right + gap <= a.left || a.bottom + gap <= b.top || b.bottom + gap <= a.top;
    // Markers on top of one's own are one blob with it: the name goes beside the blob.
    const free = (r, icon) => taken.every((t) => t === icon || apart(r, t, LABEL_GAP) || (t.icon && !apart(t, icon, 0)));
    for (const label of labels) {
      const { at, width, height } = label;
      const top = at.y - Math.round(height / 2);
      const sides = {
        right: { left: at.x + LABEL_OFFSET, top, right: at.x + LABEL_OFFSET + width, bottom: top + height },
        left: { left: at.x - LABEL_OFFSET - width, top, right: at.x - LABEL_OFFSET, bottom: top + height },
      };
      const side = Object.keys(sides).find((name) => inside(sides[name]) && free(sides[name], label.icon));
      if (!side) {
        label.el.classList.add("label-hidden");
        continue;
      }
      taken.push(sides[side]);
      // Placed where Leaflet itself puts it for this direction, so its own zoom animation agrees.
      const tooltip = label.marker.getTooltip();
      tooltip.options.direction = side;
      tooltip.options.offset = L.point(side === "right" ? LABEL_OFFSET : -LABEL_OFFSET, 0);
      L.DomUtil.setPosition(label.el, this.map.containerPointToLayerPoint([sides[side].left, sides[side].top]).round());
      label.el.classList.toggle("leaflet-tooltip-right", side === "right");
      label.el.classList.toggle("leaflet-tooltip-left", side === "left");
    }
  }

  _decorate(marker) {
    if (this.drawnOnCanvas) {
      this._colourDot(marker);
      return;
    }
    const el = marker.getElement();
    const device = this.store.devices.get(marker.imei);
    if (!el || !device) return;
    const state = this.store.stateOf(device);
    el.setAttribute("data-testid", `marker-${device.imei}`);
    el.dataset.state = state;
    el.dataset.lat = device.last_position.lat;
    el.dataset.lon = device.last_position.lon;
    el.setAttribute("aria-label", `${device.name}: ${STATE_LABELS[state]}`);
    const tooltip = marker.getTooltip();
    if (tooltip.getContent() !== device.name) tooltip.setContent(device.name);
    tooltip.getElement()?.setAttribute("data-testid", `marker-label-${device.imei}`);
    for (const name of Object.keys(STATE_LABELS)) el.classList.toggle(`state-${name}`, name === state);
  }

  // A canvas dot's colour (and size, for an alert), restyled only when its state changes: each
  // change redraws that part of the canvas.
  _colourDot(marker) {
    const device = this.store.devices.get(marker.imei);
    if (!device) return;
    const state = this.store.stateOf(device);
    const tooltip = marker.getTooltip();
    if (tooltip.getContent() !== device.name) tooltip.setContent(device.name);
    if (marker.state === state) return;
    marker.state = state;
    marker.setStyle({ ...DOT_STYLE, ...(state === "alert" ? ALERT_DOT_STYLE : {}), fillColor: DOT_COLOURS[state] });
    if (state === "alert") marker.bringToFront();
  }

  openDetails(imei) {
    const device = this.store.devices.get(imei);
    if (!device?.last_position) return;
    this.openImei = imei;
    this._padPopup();
    this.popup.setLatLng([device.last_position.lat, device.last_position.lon]).setContent(this._details(device));
    if (!this.map.hasLayer(this.popup)) this.popup.openOn(this.map);
  }

  // The details follow the worker, but their buttons stay the same elements: a button being
  // focused (keyboard) or pressed is never replaced under the user.
  _refreshDetails() {
    const device = this.store.devices.get(this.openImei);
    if (!device?.last_position) return;
    this._padPopup();
    const shown = this.popup.getContent();
    const fresh = this._details(device);
    if (shown instanceof HTMLElement && shown.dataset.imei === device.imei) {
      const buttons = shown.querySelector(":scope > .button-row");
      fresh.querySelector(":scope > .button-row").remove();
      shown.replaceChildren(...fresh.childNodes, buttons);
      this.popup.setLatLng([device.last_position.lat, device.last_position.lon]).update();
    } else {
      this.popup.setLatLng([device.last_position.lat, device.last_position.lon]).setContent(fresh);
    }
  }

  focus(imei) {
    const device = this.store.devices.get(imei);
    if (!device?.last_position) return;
    this._moving();
    this.map.setView([device.last_position.lat, device.last_position.lon], Math.max(this.map.getZoom(), FOCUS_ZOOM));
    this.openDetails(imei);
  }

  _details(device) {
    const state = this.store.stateOf(device);
    const position = device.last_position;
    const row = (label, value, testid) => [h("dt", { text: label }), h("dd", { "data-testid": testid, text: value })];
    const unresolved = [...this.store.alerts.values()].filter((a) => a.imei === device.imei && a.status !== "resolved");
    return h("div", { class: "worker-details", "data-testid": "worker-details", "data-imei": device.imei },
      h("div", { class: "details-title" },
        h("span", { class: `dot state-${state}` }),
        h("strong", { "data-testid": "details-name", text: device.name })),
      h("div", { class: "muted", text: `IMEI ${device.imei}` }),
      h("dl", {},
        row("State", STATE_LABELS[state], "details-state"),
        row("Connection", device.online ? "online" : "offline", "details-online"),
        row("Battery", device.battery === null || device.battery === undefined ? "—" : `${device.battery} %`, "details-battery"),
        row("Last seen", ago(device.last_seen), "details-last-seen"),
        row("Speed", device.speed === undefined ? "—" : `${device.speed.toFixed(1)} m/s`, "details-speed"),
        row("Position", coords(position.lat, position.lon), "details-position"),
        row("Fix time", clock(position.ts), "details-fix-time")),
      unresolved.length ? h("ul", { class: "details-alerts", "data-testid": "details-alerts" },
        unresolved.map((a) => h("li", { text: `${KIND_LABELS[a.kind] ?? a.kind} · ${a.status} · ${clock(a.ts)}` }))) : null,
      h("div", { class: "button-row" },
        h("button", { type: "button", class: "quiet", "data-testid": "details-track",
          onclick: () => this.actions.showTrack(device.imei), text: "Track" }),
        h("button", { type: "button", class: "quiet", "data-testid": "details-alerts-button",
          onclick: () => this.actions.showAlerts(device.imei), text: "Alerts" }),
        h("button", { type: "button", class: "quiet", "data-testid": "details-commands",
          onclick: () => this.actions.showCommands(device.imei), text: "Commands" })));
  }

  setGeofences(fences) {
    this.fences = fences;
    this.geofences.clearLayers();
    for (const fence of fences) {
      if (fence.id === this.hiddenFence) continue; // being edited: the editor draws it
      const shape = fence.geometry;
      const style = { className: "geofence", color: "#6a1b9a", weight: 2, fillOpacity: 0.08, dashArray: "6 4" };
      let layer;
      if (shape.type === "Circle") {
        layer = L.circle([shape.center[1], shape.center[0]], { ...style, radius: shape.radius_m });
      } else if (shape.type === "Polygon") {
        layer = L.polygon(shape.coordinates.map((ring) => ring.map(([lon, lat]) => [lat, lon])), style);
      } else {
        continue;
      }
      layer.bindTooltip(fence.name, { permanent: true, direction: "center", className: "geofence-label" });
      layer.on("add", () => {
        layer.getElement()?.setAttribute("data-testid", `geofence-${fence.id}`);
        layer.getElement()?.setAttribute("aria-label", `Geofence ${fence.name}`);
      });
      layer.addTo(this.geofences);
    }
  }

  /** Leaves that geofence out (null: none) while the admin area edits it. */
  hideGeofence(id) {
    this.hiddenFence = id;
    this.setGeofences(this.fences ?? []);
  }

  /** Frames a geometry of the API's (a geofence's). */
  fitGeometry(geometry) {
    const bounds = geometry.type === "Circle"
      ? L.latLng(geometry.center[1], geometry.center[0]).toBounds(geometry.radius_m * 2)
      : L.latLngBounds(geometry.coordinates[0].map(([lon, lat]) => [lat, lon]));
    this._moving();
    this.map.fitBounds(bounds, { padding: [40, 40], maxZoom: 18 });
  }

  showTrack(positions, alerts) {
    this.map.closePopup();
    this.track.clearLayers();
    const points = positions.map((p) => [p.lat, p.lon]);
    const bounds = L.latLngBounds(points);
    if (points.length) {
      const line = L.polyline(points, { className: "track-line", color: "#1565c0", weight: 4, opacity: 0.85 });
      line.on("add", () => {
        line.getElement()?.setAttribute("data-testid", "track-line");
        line.getElement()?.setAttribute("data-points", String(points.length));
      });
      line.addTo(this.track);
      L.circleMarker(points[0], { radius: 6, color: "#1565c0", fillColor: "#fff", fillOpacity: 1 })
        .bindTooltip(`Start ${clock(positions[0].ts)}`).addTo(this.track);
      L.circleMarker(points.at(-1), { radius: 6, color: "#1565c0", fillColor: "#1565c0", fillOpacity: 1 })
        .bindTooltip(`End ${clock(positions.at(-1).ts)}`).addTo(this.track);
    }
    for (const alert of alerts) {
      if (alert.lat === null || alert.lon === null) continue;
      const marker = L.marker([alert.lat, alert.lon], {
        icon: L.divIcon({ className: "track-alert", html: "!", iconSize: [24, 24] }),
        title: `${KIND_LABELS[alert.kind] ?? alert.kind} ${clock(alert.ts)}`,
      });
      marker.on("add", () => marker.getElement()?.setAttribute("data-testid", `track-alert-${alert.id}`));
      marker.addTo(this.track);
      bounds.extend([alert.lat, alert.lon]);
    }
    if (bounds.isValid()) {
      this._moving();
      this.map.fitBounds(bounds, { padding: [40, 40], maxZoom: 19 });
    }
  }

  clearTrack() {
    this.track.clearLayers();
  }

  /** A report's layers (trips and stops) in the track's place, framed. */
  showOverlay(layers) {
    this.map.closePopup();
    this.track.clearLayers();
    const group = L.featureGroup(layers).addTo(this.track);
    const bounds = group.getBounds();
    if (bounds.isValid()) {
      this._moving();
      this.map.fitBounds(bounds, { padding: [40, 40], maxZoom: 18 });
    }
  }

  /** Frames some [lat, lon] points (a stop, a trip). */
  frame(points) {
    this._moving();
    this.map.fitBounds(L.latLngBounds(points), { padding: [40, 40], maxZoom: 18 });
  }
}
