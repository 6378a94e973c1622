// The demo site's widget configuration, in the original's shape. ?transport= and ?lang= let
// the same page try every transport and language; the server names its chat service and URL
// prefix on the root element (webchat serve --service ...).
(function () {
  const params = new URLSearchParams(location.search);
  const transport = params.get("transport") || "websocket";
  const service = document.documentElement.dataset.service || "customer-support";
  const base = location.origin + (document.documentElement.dataset.apiPrefix ?? "/genesys");
  window._genesys = {
    widgets: {
      main: {lang: params.get("lang") || "en"},
      webchat: {
        dataURL: `${base}/2/chat/${encodeURIComponent(service)}`,
        uploadsEnabled: true,
        userData: {source: "demo-page"},
        pollInterval: 500,
        chatButton: {enabled: true, openDelay: 0},  // at once (the default waits 1 s)
        cometD: {
          enabled: transport !== "rest",
          cometURL: `${base}/cometd`,
          channel: `/service/chatV2/${service}`,
          apiURL: `${base}/2/chat-ntf`,
          websocketEnabled: transport === "websocket",
        },
      },
    },
  };
})();
