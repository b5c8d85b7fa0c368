// Helpers shared by the storefront demo and the merchandiser console: calling the API with an
// API key, building DOM without innerHTML (product titles and queries are untrusted text), and
// small SVG bar charts. Plain ES2020, no build step.
"use strict";

const PS = (() => {
    /** An HTTP answer that is not 2xx, with FastAPI's detail turned into one readable line. */
    class ApiError extends Error {
        constructor(status, detail) {
            super(`${status}: ${describeDetail(detail)}`);
            this.status = status;
            this.detail = detail;
        }
    }

    function describeDetail(detail) {
        if (detail == null) return "";
        if (typeof detail === "string") return detail;
        if (Array.isArray(detail)) {
            // FastAPI validation errors: [{loc: ["query", "k"], msg: "..."}]
            return detail
                .map((d) => {
                    const loc = Array.isArray(d.loc) ? d.loc.filter((p) => p !== "body" && p !== "query").join(".") : "";
                    return loc ? `${loc}: ${d.msg}` : String(d.msg ?? JSON.stringify(d));
                })
                .join("; ");
        }
        if (typeof detail === "object" && "detail" in detail) return describeDetail(detail.detail);
        return JSON.stringify(detail);
    }

    /**
     * Call the API.
     * @param {string} path e.g. "/search"
     * @param {object} options {method, params (object or URLSearchParams), json, form (FormData),
     *   key (API key), signal (AbortSignal)}
     * @returns {Promise<any>} the decoded JSON answer
     * @throws {ApiError} for a non-2xx answer
     */
    async function api(path, options = {}) {
        const { method = "GET", params, json, form, key, signal } = options;
        let url = path;
        if (params) {
            const search = params instanceof URLSearchParams ? params : toParams(params);
            const text = search.toString();
            if (text) url += (url.includes("?") ? "&" : "?") + text;
        }
        const headers = { Accept: "application/json" };
        if (key) headers.Authorization = `Bearer ${key}`;
        let body;
        if (json !== undefined) {
            headers["Content-Type"] = "application/json";
            body = JSON.stringify(json);
        } else if (form !== undefined) {
            body = form; // the browser writes the multipart boundary
        }
        const response = await fetch(url, { method, headers, body, signal, credentials: "omit" });
        const type = response.headers.get("content-type") || "";
        const data = type.includes("json") ? await response.json() : await response.text();
        if (!response.ok) {
            throw new ApiError(response.status, data && typeof data === "object" ? data.detail : data);
        }
        return data;
    }

    /** URLSearchParams from an object; arrays repeat the name, null/undefined/"" are left out. */
    function toParams(values) {
        const out = new URLSearchParams();
        for (const [name, value] of Object.entries(values)) {
            const list = Array.isArray(value) ? value : [value];
            for (const v of list) {
                if (v === null || v === undefined || v === "") continue;
                out.append(name, String(v));
            }
        }
        return out;
    }

    /**
     * Create an element: el("li", {class: "x", dataset: {id: 1}, onclick: fn}, "text", child).
     * Strings become text nodes, so untrusted text is never parsed as HTML.
     */
    function el(tag, attrs = {}, ...children) {
        const node = document.createElement(tag);
        setAttrs(node, attrs);
        append(node, children);
        return node;
    }

    function setAttrs(node, attrs) {
        for (const [name, value] of Object.entries(attrs || {})) {
            if (value === null || value === undefined || value === false) continue;
            if (name === "dataset") Object.assign(node.dataset, value);
            else if (name === "style") Object.assign(node.style, value);
            else if (name.startsWith("on") && typeof value === "function") node.addEventListener(name.slice(2), value);
            else if (name === "class") node.className = value;
            else if (value === true) node.setAttribute(name, "");
            else node.setAttribute(name, String(value));
        }
    }

    function append(node, children) {
        for (const child of children.flat()) {
            if (child === null || child === undefined || child === false) continue;
            node.append(child instanceof Node ? child : document.createTextNode(String(child)));
        }
    }

    /** Replace a node's children. */
    function fill(node, ...children) {
        node.replaceChildren();
        append(node, children);
        return node;
    }

    const SVG = "http://www.w3.org/2000/svg";

    function svg(tag, attrs = {}, ...children) {
        const node = document.createElementNS(SVG, tag);
        for (const [name, value] of Object.entries(attrs)) {
            if (value !== null && value !== undefined) node.setAttribute(name, String(value));
        }
        for (const child of children.flat()) {
            if (child === null || child === undefined) continue;
            node.append(child instanceof Node ? child : document.createTextNode(String(child)));
        }
        return node;
    }

    /**
     * A horizontal bar chart as SVG.
     * @param {Array<{label: string, value: number, title?: string}>} rows
     * @param {object} options {className (extra bar class), format (value -> text), label (aria)}
     */
    function barChart(rows, options = {}) {
        const { className = "", format = (v) => String(v), label = "chart" } = options;
        const rowHeight = 24;
        const labelWidth = 200;
        const width = 640;
        const barSpace = width - labelWidth - 60;
        const max = Math.max(1e-9, ...rows.map((r) => r.value));
        const height = Math.max(rowHeight, rows.length * rowHeight) + 4;
        const chart = svg("svg", {
            class: "chart",
            viewBox: `0 0 ${width} ${height}`,
            role: "img",
            "aria-label": label,
        });
        rows.forEach((row, i) => {
            const y = i * rowHeight + 2;
            const w = Math.max(1, (row.value / max) * barSpace);
            const text = row.label.length > 30 ? `${row.label.slice(0, 29)}…` : row.label;
            chart.append(
                svg("g", { class: "chart-row", "data-label": row.label, "data-value": row.value },
                    svg("title", {}, row.title || `${row.label}: ${format(row.value)}`),
                    svg("text", { x: labelWidth - 6, y: y + 15, "text-anchor": "end" }, text),
                    svg("rect", { class: `bar ${className}`.trim(), x: labelWidth, y: y + 3, width: w, height: rowHeight - 8, rx: 3 }),
                    svg("text", { x: labelWidth + w + 6, y: y + 15 }, format(row.value)),
                ),
            );
        });
        return chart;
    }

    /** A rate with its 95% interval as a small SVG (0..1 scale). */
    function intervalChart(rows, options = {}) {
        const { label = "interval chart" } = options;
        const rowHeight = 26;
        const labelWidth = 140;
        const width = 520;
        const span = width - labelWidth - 70;
        const max = Math.max(0.05, ...rows.map((r) => r.high));
        const x = (v) => labelWidth + (v / max) * span;
        const chart = svg("svg", {
            class: "chart",
            viewBox: `0 0 ${width} ${rows.length * rowHeight + 4}`,
            role: "img",
            "aria-label": label,
        });
        rows.forEach((row, i) => {
            const y = i * rowHeight + 14;
            chart.append(
                svg("g", { class: "chart-row", "data-label": row.label },
                    svg("text", { x: labelWidth - 6, y: y + 4, "text-anchor": "end" }, row.label),
                    svg("line", { class: "interval", x1: x(row.low), x2: x(row.high), y1: y, y2: y }),
                    svg("circle", { class: "bar", cx: x(row.rate), cy: y, r: 5 }),
                    svg("text", { x: x(row.high) + 8, y: y + 4 }, percent(row.rate)),
                ),
            );
        });
        return chart;
    }

    function percent(value, digits = 1) {
        if (value === null || value === undefined || Number.isNaN(value)) return "–";
        return `${(value * 100).toFixed(digits)}%`;
    }

    function money(amount, currency) {
        if (amount === null || amount === undefined) return "";
        try {
            return new Intl.NumberFormat(undefined, { style: "currency", currency: currency || "EUR" }).format(amount);
        } catch (_) {
            return `${amount.toFixed(2)} ${currency || ""}`.trim();
        }
    }

    /** A random id that also works outside secure contexts (plain http on a LAN address). */
    function randomId() {
        if (window.crypto && typeof window.crypto.randomUUID === "function" && window.isSecureContext) {
            return window.crypto.randomUUID();
        }
        const bytes = new Uint8Array(16);
        window.crypto.getRandomValues(bytes);
        return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    }

    /** Call fn at most once per `ms` of quiet. */
    function debounce(fn, ms) {
        let timer = null;
        const wrapped = (...args) => {
            clearTimeout(timer);
            timer = setTimeout(() => fn(...args), ms);
        };
        wrapped.cancel = () => clearTimeout(timer);
        return wrapped;
    }

    return { ApiError, api, toParams, el, fill, svg, barChart, intervalChart, percent, money, randomId, debounce, describeDetail };
})();
