// The demo site's widget configuration, in the original's shape. ?transport= and ?lang= let
// the same page try every transport and language.
(function () {
  const params = new URLSearchParams(location.search);
  const transport = params.get("transport") || "websocket";
  const origin = location.origin;
  window._genesys = {
    widgets: {
      main: {lang: params.get("lang") || "en"},
      webchat: {
        dataURL: `${origin}/genesys/2/chat/customer-support`,
        uploadsEnabled: true,
        userData: {source: "demo-page"},
        pollInterval: 500,
        cometD: {
          enabled: transport !== "rest",
          cometURL: `${origin}/genesys/cometd`,
          channel: "/service/chatV2/customer-support",
          apiURL: `${origin}/genesys/2/chat-ntf`,
          websocketEnabled: transport === "websocket",
        },
      },
    },
  };
})();
